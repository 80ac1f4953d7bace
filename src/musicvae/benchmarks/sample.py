"""Sampling throughput: generated tokens/s with and without the KV cache, and the ratio, in one run.

EOS is masked out so every sequence runs the full length (a fair, fixed amount of work per setting).
Untrained weights: speed does not depend on what the model learned.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from rich.console import Console

from musicvae.benchmarks import size_from_overrides
from musicvae.data import EOS_ID
from musicvae.generate import SamplingConfig, sample_tokens
from musicvae.models.vae import MusicVAE, VAEConfig


@dataclass
class SampleBenchSize:
    d_model: int = 256
    layers: int = 4
    heads: int = 4
    latent_dim: int = 64
    vocab_size: int = 363
    batch_size: int = 8
    length: int = 256
    mode: str = "in_attention"
    repeats: int = 3


class NoEOSMusicVAE(MusicVAE):
    """The same model with EOS forbidden, so that every sequence has exactly `length` tokens."""

    def decode(self, tokens, z, cache=None, bars=None):
        logits = super().decode(tokens, z, cache, bars)
        logits[..., EOS_ID] = float("-inf")
        return logits


def run_sample_benchmark(size: SampleBenchSize, device: str = "cpu") -> dict:
    torch.manual_seed(0)
    cfg = VAEConfig(
        vocab_size=size.vocab_size, max_len=size.length + 1, d_model=size.d_model, heads=size.heads,
        encoder_layers=size.layers, decoder_layers=size.layers, latent_dim=size.latent_dim,
        conditioning={"mode": size.mode},
    )  # fmt: skip
    model = NoEOSMusicVAE(cfg).to(device).eval()
    z = torch.randn(size.batch_size, size.latent_dim, device=device)
    scfg = SamplingConfig(max_tokens=size.length)
    result = {"device": device, "mode": size.mode, "batch_size": size.batch_size, "length": size.length}
    for name, use_cache in (("cached", True), ("uncached", False)):
        times = []
        for r in range(size.repeats):
            gen = torch.Generator(device=device).manual_seed(r)
            t0 = time.perf_counter()
            out = sample_tokens(model, z, scfg, generator=gen, use_cache=use_cache)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            assert all(len(seq) == size.length for seq in out)
        result[f"{name}_tokens_per_s"] = size.batch_size * size.length / statistics.median(times)
    result["speedup"] = result["cached_tokens_per_s"] / result["uncached_tokens_per_s"]
    return result


def main(config_dir: str, overrides: Sequence[str]) -> dict:
    """python scripts/benchmark.py sample [device=cuda] [length=512 batch_size=8 mode=cross_attention ...]"""
    size, device = size_from_overrides(SampleBenchSize, overrides)
    result = run_sample_benchmark(size, device)
    console = Console()
    console.print(f"[bold]sample benchmark[/bold] ({device}, {torch.get_num_threads()} threads): {asdict(size)}")
    console.print(
        f"  KV cache    {result['cached_tokens_per_s']:,.0f} tokens/s (median of {size.repeats})\n"
        f"  no cache    {result['uncached_tokens_per_s']:,.0f} tokens/s\n"
        f"  speed-up    {result['speedup']:.1f}x"
    )
    return result
