"""Cached sampling tokens/s of whichever musicvae is on PYTHONPATH (before/after the preallocated cache).

Only `MusicVAE`, `VAEConfig`, `SamplingConfig` and `sample_tokens`, which both versions share; EOS
masked so every sequence runs the full length; median of `repeats` after one warm-up decode.
    python docs/results/speed/cached_sampling.py LENGTH [BATCH] [REPEATS]
"""

import statistics
import sys
import time

import torch

from musicvae.generation.decode import SamplingConfig, sample_tokens
from musicvae.models.vae import MusicVAE, VAEConfig
from musicvae.tokens import EOS_ID


class NoEOS(MusicVAE):
    def decode(self, tokens, z, cache=None, **kw):  # **kw: bars, attributes (later versions)
        logits = super().decode(tokens, z, cache, **kw)
        logits[..., EOS_ID] = float("-inf")
        return logits


def main(length: int, batch: int = 8, repeats: int = 3) -> None:
    torch.manual_seed(0)
    cfg = VAEConfig(vocab_size=363, max_len=length + 1, d_model=256, heads=4, encoder_layers=4,
                    decoder_layers=4, latent_dim=64, dropout=0.0)  # fmt: skip
    model = NoEOS(cfg).eval()
    z = torch.randn(batch, 64)
    sample_tokens(model, z, SamplingConfig(max_tokens=16))  # warm-up
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        out = sample_tokens(model, z, SamplingConfig(max_tokens=length), torch.Generator().manual_seed(r))
        times.append(time.perf_counter() - t0)
        assert all(len(s) == length for s in out)
    print(f"cached sampling length {length} batch {batch}: {batch * length / statistics.median(times):,.0f} tokens/s"
          f" (median of {repeats}; {torch.get_num_threads()} threads; {sys.modules['musicvae'].__file__})")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
