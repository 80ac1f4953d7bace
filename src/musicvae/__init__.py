"""musicvae: a Transformer-VAE on MIDI for studying how the decoder is conditioned on z."""

__version__ = "0.1.0"
