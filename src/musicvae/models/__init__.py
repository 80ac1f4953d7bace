"""The VAE as plain `nn.Module`s (no Lightning, no Hydra), every part built from one `VAEConfig` (config):
layers, the bidirectional encoder, the conditionings (how the decoder sees z), the decoder with its KV
cache, `MusicVAE`; and `checkpoint`, which reads a checkpoint safely and rebuilds its model."""

from musicvae.models.checkpoint import model_from_checkpoint, read_checkpoint
from musicvae.models.conditioning import build_conditioning
from musicvae.models.vae import MusicVAE, VAEConfig, VAEOutput

__all__ = ["MusicVAE", "VAEConfig", "VAEOutput", "build_conditioning", "model_from_checkpoint", "read_checkpoint"]
