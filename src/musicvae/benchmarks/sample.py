"""Sampling throughput: generated tokens/s with and without the KV cache, and the ratio, in one run.

EOS is masked out so every sequence runs the full length (a fair, fixed amount of work per setting).
Untrained weights: speed does not depend on what the model learned.

`latent=bar`: a model with one latent per bar, z (B, bars, c), decoded under `BarGrid`, which places a
Bar token every length // bars tokens and nowhere else: every sequence holds exactly `bars` bars in
exactly `length` tokens, cached or not, so both sides do the same work and switch latents at bar lines.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from rich.console import Console

from musicvae.benchmarks import BAR_ID, check_latent_settings, size_from_overrides
from musicvae.errors import UserError
from musicvae.generation.decode import SamplingConfig, TokenRules, sample_tokens
from musicvae.models.vae import MusicVAE, VAEConfig
from musicvae.tokens import EOS_ID

SEGMENT_LENGTH = 256  # default tokens per sequence, latent=segment
BAR_TOKENS = 16  # default tokens per bar, latent=bar: 16 bars x 16 = 256, as the segment default


@dataclass
class SampleBenchSize:
    d_model: int = 256
    layers: int = 4
    heads: int = 4
    latent_dim: int = 64
    vocab_size: int = 363
    batch_size: int = 8
    length: int = 0  # generated tokens per sequence; 0: SEGMENT_LENGTH, or bars x BAR_TOKENS per bar
    mode: str = "in_attention"
    repeats: int = 3
    latent: str = "segment"  # segment: z (B, c) | bar: z (B, bars, c), one per bar
    bars: int = 16  # latent=bar: bars per sequence (ignored for latent=segment)
    compile: bool = False  # sample.py compile=true: compiled with frozen weights; an untimed decode compiles

    def __post_init__(self):
        check_latent_settings(self.latent, self.bars, self.vocab_size)
        per_bar = self.latent == "bar"
        if self.length == 0:
            self.length = self.bars * BAR_TOKENS if per_bar else SEGMENT_LENGTH
        if self.length < 1:
            raise UserError(f"benchmark setting length={self.length} must be at least 1")
        if per_bar and self.bars > self.length:
            raise UserError(
                f"benchmark setting bars={self.bars} must be at most length={self.length} "
                "(every bar holds at least its Bar token)"
            )

    def shown(self) -> dict:
        """The settings to print: latent=segment shows those it had before per-bar latents existed."""
        settings = asdict(self)
        if self.latent == "segment":
            del settings["latent"], settings["bars"]
        if not self.compile:
            del settings["compile"]
        return settings


class NoEOSMusicVAE(MusicVAE):
    """The same model with EOS forbidden, so that every sequence has exactly `length` tokens."""

    def decode(self, tokens, z, cache=None, bars=None, attributes=None):
        logits = super().decode(tokens, z, cache, bars, attributes)
        logits[..., EOS_ID] = float("-inf")
        return logits


@dataclass
class _GridState:
    step: int = 0  # tokens emitted (prompt included)


class BarGrid:
    """Decoding rules for the per-bar benchmark (a `TokenRules.grammar`): generated token j is a Bar if
    j = k x (length // bars) for some k < bars, and never a Bar otherwise (the last bar takes the rest).

    So a row of `length` tokens holds exactly `bars` bars whether or not the cache is used, and the
    draws stay random elsewhere. `allowed` returns one (V,) row: the same for every row of the batch.
    """

    def __init__(self, vocab_size: int, length: int, bars: int, bar_id: int = BAR_ID):
        self.every, self.bars = length // bars, bars
        self.bar_only = torch.zeros(vocab_size, dtype=torch.bool)
        self.bar_only[bar_id] = True
        self.no_bar = ~self.bar_only

    def start(self, batch: int, device, bars: int | None = None, max_new: int | None = None,
              time_sigs: torch.Tensor | None = None) -> _GridState:  # fmt: skip
        """The grammar's protocol (`RemiGrammar.start`); a skeleton has no TimeSig tokens to force here."""
        self.bar_only, self.no_bar = self.bar_only.to(device), self.no_bar.to(device)
        return _GridState()

    def feed(self, state: _GridState, tokens: torch.Tensor) -> None:
        state.step += tokens.shape[1]

    def allowed(self, state: _GridState) -> torch.Tensor:
        j = state.step
        return self.bar_only if j % self.every == 0 and j // self.every < self.bars else self.no_bar

    def advance(self, state: _GridState, tokens: torch.Tensor) -> None:
        state.step += 1


@dataclass
class SampleSetup:
    """What one timed decode needs: the model, z (B, c) or (B, bars, c), and the decoding settings."""

    model: MusicVAE
    z: torch.Tensor
    cfg: SamplingConfig
    rules: TokenRules | None
    bars: int | None


def build_sample_setup(size: SampleBenchSize, device: str = "cpu") -> SampleSetup:
    """The seeded untrained model, z and decoding settings of a benchmark size."""
    torch.manual_seed(0)
    per_bar = size.latent == "bar"
    bar_settings = {"latent": "bar", "max_bars": size.bars} if per_bar else {}
    cfg = VAEConfig(
        vocab_size=size.vocab_size, max_len=size.length + 1, d_model=size.d_model, heads=size.heads,
        encoder_layers=size.layers, decoder_layers=size.layers, latent_dim=size.latent_dim,
        conditioning={"mode": size.mode}, **bar_settings,
    )  # fmt: skip
    model = NoEOSMusicVAE(cfg).to(device).eval()
    scfg = SamplingConfig(max_tokens=size.length)
    if not per_bar:
        return SampleSetup(
            model, torch.randn(size.batch_size, size.latent_dim, device=device), scfg, None, None
        )
    z = torch.randn(size.batch_size, size.bars, size.latent_dim, device=device)
    rules = TokenRules(bar_ids=(BAR_ID,), grammar=BarGrid(size.vocab_size, size.length, size.bars))
    return SampleSetup(model, z, scfg, rules, size.bars)


def decode(setup: SampleSetup, use_cache: bool, seed: int) -> list[list[int]]:
    """One decode of the setup's z with a seeded generator -> B token lists."""
    gen = torch.Generator(device=setup.z.device).manual_seed(seed)
    return sample_tokens(
        setup.model, setup.z, setup.cfg, gen, use_cache=use_cache, rules=setup.rules, bars=setup.bars
    )


def run_sample_benchmark(size: SampleBenchSize, device: str = "cpu") -> dict:
    setup = build_sample_setup(size, device)
    result = {"device": device, "mode": size.mode, "batch_size": size.batch_size, "length": size.length}
    if size.latent == "bar":
        result |= {"latent": size.latent, "bars": size.bars}
    if size.compile:
        result["compile"] = True
        setup.model.compile_parts(frozen=True)
    for name, use_cache in (("cached", True), ("uncached", False)):
        if size.compile:  # compiling takes a minute on a CPU: not part of any timed decode
            decode(setup, use_cache, seed=size.repeats)
        times = []
        for r in range(size.repeats):
            t0 = time.perf_counter()
            out = decode(setup, use_cache, seed=r)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            # a shorter row would time less work than the figure claims
            if any(len(seq) != size.length for seq in out):
                raise RuntimeError(
                    f"a {name} decode gave {sorted({len(s) for s in out})} tokens, not {size.length}"
                )
        result[f"{name}_tokens_per_s"] = size.batch_size * size.length / statistics.median(times)
    result["speedup"] = result["cached_tokens_per_s"] / result["uncached_tokens_per_s"]
    return result


def main(config_dir: str, overrides: Sequence[str]) -> dict:
    """python scripts/benchmark.py sample [device=cuda] [length=512 batch_size=8 mode=cross_attention ...]
    [latent=bar bars=16]"""
    size, device = size_from_overrides(SampleBenchSize, overrides)
    result = run_sample_benchmark(size, device)
    console = Console()
    console.print(
        f"[bold]sample benchmark[/bold] ({device}, {torch.get_num_threads()} threads): {size.shown()}"
    )
    console.print(
        f"  KV cache    {result['cached_tokens_per_s']:,.0f} tokens/s (median of {size.repeats})\n"
        f"  no cache    {result['uncached_tokens_per_s']:,.0f} tokens/s\n"
        f"  speed-up    {result['speedup']:.1f}x"
    )
    return result
