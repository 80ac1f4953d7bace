"""From a trained checkpoint to music: load it (`inference`), decode z with a KV cache, top-p and the
grammar mask (`decode`), the sample modes of `scripts/sample.py` (`modes`: prior, reconstruct,
interpolate, edit, shift, transfer), attribute vectors (`attribute_vectors`), and the files a sample is
heard and seen as (`render`: MIDI and piano rolls; `audio`: SoundFont audio).

    loaded = load_checkpoint("run/checkpoints/last.ckpt")
    summary = sample(SampleRequest(ckpt="run/checkpoints/last.ckpt", mode="prior", n=4))
"""

from musicvae.generation.audio import AudioConfig, render_file
from musicvae.generation.decode import SamplingConfig, TokenRules, decode_latents
from musicvae.generation.inference import LoadedCheckpoint, load_checkpoint, token_rules
from musicvae.generation.modes import MODES, SampleRequest, sample

__all__ = [
    "MODES",
    "AudioConfig",
    "LoadedCheckpoint",
    "SampleRequest",
    "SamplingConfig",
    "TokenRules",
    "decode_latents",
    "load_checkpoint",
    "render_file",
    "sample",
    "token_rules",
]
