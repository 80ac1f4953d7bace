"""Side by side: our VAE and the same VAE built from x-transformers, timed alternately in one process.

Both sides get the same sizes and settings: pre-norm LayerNorm, learned absolute positions, GELU
feed-forward with the same ff_mult, the same heads, dropout 0 everywhere, the decoder's token table
tied to its output head, the same latent size, z projected to the model width (one Linear, no bias)
and added in the decoder's attention input (in-attention). Training: the same random batch, the same
loss (token NLL + KL), AdamW. Sampling: from the same z, plain softmax sampling, PAD/BOS/EOS banned
on both sides so that every sequence runs the full length.

The sides run in turns (ours, theirs, then theirs, ours, ...) after a warm-up, so that a noisy machine
slows both alike; the report gives medians and ratios ours / theirs.

What differs by construction (each library's own way, kept):
- x-transformers adds the projected z before the norm of every sub-layer, attention and FF: LN(x + Wz),
  the residual stream untouched. Ours adds it where `position` says: the default post_norm before
  self-attention only, after its norm (LN(x) + Wz); `position=every_sublayer` is x-transformers' own
  (its equivalence: tests/models/test_x_transformers_equivalence.py).
- x-transformers' attention projections and LayerNorms have no biases; ours do (both parameter
  counts are printed; the model's `bias=false` drops ours, not set here).
- With summary pooling, our last encoder layer computes the summary position only (the only one read:
  the same z, ~5/6 of a layer's work less); x-transformers computes every position's output.

x-transformers is a benchmark-only extra (`pip install -e ".[bench]"`), imported when this runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields

import torch
from rich.console import Console
from torch import nn

from musicvae.benchmarks import size_from_overrides
from musicvae.benchmarks.sample import NoEOSMusicVAE
from musicvae.benchmarks.train import benchmark_loss, sync_device
from musicvae.errors import UserError
from musicvae.generation.decode import SamplingConfig, sample_tokens
from musicvae.models.conditioning import resolve_position
from musicvae.models.vae import MusicVAE, VAEConfig
from musicvae.tokens import BOS_ID, EOS_ID, PAD_ID

WHATS = ("train", "sample", "both")
THEIR_ATTENTIONS = ("flash", "plain")
# The targets for ours: tokens/s ratios (see the module docstring for what is compared).
GOALS = {"train": 1.25, "sample": 2.5, "cache_speedup": 13.0}
WARMUP_SAMPLE_TOKENS = 16  # a short warm-up decode: first-call allocations, not the timed length


@dataclass
class CompareBenchSize:
    d_model: int = 256
    layers: int = 4  # encoder and decoder each
    heads: int = 4
    latent_dim: int = 64
    ff_mult: int = 4
    vocab_size: int = 363
    position: str = "post_norm"  # where our in-attention adds z (x-transformers' own: every_sublayer)
    # summary (the model's default) <-> x-transformers' use_cls_token; mean <-> its average_pool_embed
    pooling: str = "summary"
    their_attention: str = "flash"  # flash: torch's SDPA, as ours uses (attn_flash=True); plain: its einsum
    batch_size: int = 16  # training batch
    seq_len: int = 256  # training tokens per sequence
    steps: int = 8  # timed training steps per side
    warmup: int = 2  # untimed training steps per side
    sample_batch: int = 8
    sample_length: int = 512  # generated tokens per sequence
    uncached_length: int = 512  # our uncached reference (0: skip); shorter is faster to run
    repeats: int = 3  # timed sampling runs per side
    what: str = "both"  # train | sample | both
    compile: bool = False  # torch.compile both sides (sampling: frozen weights, dynamic shapes); warm-ups compile

    def __post_init__(self):
        if self.what not in WHATS:
            raise UserError(f"what={self.what!r} is not one of {', '.join(WHATS)}")
        if self.their_attention not in THEIR_ATTENTIONS:
            raise UserError(
                f"their_attention={self.their_attention!r} is not one of {', '.join(THEIR_ATTENTIONS)}"
            )
        resolve_position(self.position)  # the model's own check (and its earlier names), before anything runs
        for key in ("batch_size", "seq_len", "steps", "sample_batch", "sample_length", "repeats"):
            if getattr(self, key) < 1:
                raise UserError(f"{key}={getattr(self, key)} must be at least 1")
        if self.seq_len < 2:
            raise UserError(f"seq_len={self.seq_len} must be at least 2 (inputs and next-token targets)")
        if not 0 <= self.uncached_length <= self.sample_length:
            raise UserError(
                f"uncached_length={self.uncached_length} must be between 0 (skip) and sample_length={self.sample_length}"
            )


def import_x_transformers():
    """The x_transformers module, or a UserError saying how to install it (it is no runtime dependency)."""
    try:
        import x_transformers
    except ImportError as e:
        raise UserError(
            'x-transformers is not installed; the side-by-side benchmark needs it: pip install -e ".[bench]"'
        ) from e
    return x_transformers


def our_vae(size: CompareBenchSize, max_len: int, cls: type[MusicVAE] = MusicVAE) -> MusicVAE:
    """Our VAE at the benchmark's size, every dropout at 0 (`dropout`, and `attn_dropout` if the model has it)."""
    no_dropout = {f.name: 0.0 for f in fields(VAEConfig) if f.name.endswith("dropout")}
    cfg = VAEConfig(
        vocab_size=size.vocab_size, max_len=max_len, d_model=size.d_model, heads=size.heads,
        encoder_layers=size.layers, decoder_layers=size.layers, latent_dim=size.latent_dim,
        ff_mult=size.ff_mult, pooling=size.pooling,
        conditioning={"mode": "in_attention", "position": size.position}, **no_dropout,
    )  # fmt: skip
    return cls(cfg)


def _ban_special(logits: torch.Tensor) -> torch.Tensor:
    """x-transformers' filter_logits_fn: PAD, BOS, EOS never sampled, as ours bans them. logits: (B, V)."""
    logits[:, [PAD_ID, BOS_ID, EOS_ID]] = float("-inf")
    return logits


class XTransformersVAE(nn.Module):
    """Our VAE's architecture from x-transformers parts.

    Encoder: TransformerWrapper + Encoder, pooled over the non-pad tokens -> Linear -> (mu, logvar).
    Decoder: TransformerWrapper + Decoder; z -> Linear(c, D) -> `in_attn_cond`, which its attention
    layers add (broadcast over time) to the input of every sub-layer's norm; it has to be D-sized.
    """

    def __init__(self, size: CompareBenchSize, max_len: int):
        super().__init__()
        xt = import_x_transformers()
        layers = dict(
            dim=size.d_model, depth=size.layers, heads=size.heads, attn_dim_head=size.d_model // size.heads,
            ff_mult=size.ff_mult, attn_dropout=0.0, ff_dropout=0.0, attn_flash=size.their_attention == "flash",
        )  # fmt: skip
        self.encoder = xt.TransformerWrapper(
            num_tokens=size.vocab_size, max_seq_len=max_len, attn_layers=xt.Encoder(**layers),
            average_pool_embed=size.pooling == "mean", use_cls_token=size.pooling == "summary",
            return_only_embed=True,  # no logits head: the encoder only feeds the posterior
            emb_dropout=0.0,
        )  # fmt: skip
        self.to_posterior = nn.Linear(size.d_model, 2 * size.latent_dim)
        self.decoder = xt.TransformerWrapper(
            num_tokens=size.vocab_size, max_seq_len=max_len, attn_layers=xt.Decoder(**layers),
            tie_embedding=True, tie_embedding_scale=1.0,  # ours: head = token table, unscaled
            emb_dropout=0.0,
        )  # fmt: skip
        self.z_proj = nn.Linear(size.latent_dim, size.d_model, bias=False)  # ours: in_attention, bias false
        self._generate = xt.AutoregressiveWrapper(self.decoder, pad_value=PAD_ID).generate

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens, mask (B, T) -> mu, logvar (B, c)."""
        pooled = self.encoder(tokens, mask=mask.bool())  # (B, D)
        mu, logvar = self.to_posterior(pooled).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, tokens: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """tokens (B, T), z (B, c) -> logits (B, T, V)."""
        return self.decoder(tokens, in_attn_cond=self.z_proj(z))  # cond (B, D): broadcast over T

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Teacher-forced, z sampled: -> logits (B, T-1, V) predicting tokens[:, 1:], mu, logvar (B, c)."""
        mu, logvar = self.encode(tokens, mask)
        z = MusicVAE.reparameterize(mu, logvar)
        return self.decode(tokens[:, :-1], z), mu, logvar

    @torch.no_grad()
    def generate(self, z: torch.Tensor, length: int, cache_kv: bool = True) -> torch.Tensor:
        """z (B, c) -> (B, length) tokens after BOS, through x-transformers' own generate loop."""
        bos = torch.full((z.shape[0], 1), BOS_ID, dtype=torch.long, device=z.device)  # (B, 1)
        # No eos_token: nothing stops early. The same in_attn_cond goes with every step.
        return self._generate(
            bos, length, filter_logits_fn=_ban_special, cache_kv=cache_kv, in_attn_cond=self.z_proj(z)
        )


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # shared (tied) tensors counted once


def _alternate(runs: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each run once per round, the order reversed every other round (A B, B A, ...), so that
    neither side always follows the other; -> the seconds each call returned, per run."""
    names = list(runs)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(runs[name]())
    return times


def _speed(times: list[float], tokens: int) -> dict:
    seconds = statistics.median(times)
    return {"seconds_median": seconds, "tokens_per_s": tokens / seconds, "runs": len(times)}


def compare_train(size: CompareBenchSize, device: torch.device) -> dict:
    """One optimizer step on each side, alternated; medians over `size.steps` steps per side."""
    torch.manual_seed(0)
    ours = our_vae(size, size.seq_len).to(device).train()
    theirs = XTransformersVAE(size, size.seq_len).to(device).train()
    if size.compile:  # as model.compile=true: every part, not frozen (the weights train)
        ours.compile_parts()
        theirs.encoder.compile()
        theirs.decoder.compile()
    tokens = torch.randint(3, size.vocab_size, (size.batch_size, size.seq_len), device=device)  # (B, T)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def ours_forward(tokens, mask):
        out = ours(tokens, mask, sample=True)
        return out.logits, out.mu, out.logvar

    def step(forward: Callable, opt: torch.optim.Optimizer) -> Callable[[], float]:
        def run() -> float:
            sync_device(device)
            t0 = time.perf_counter()
            with autocast:
                loss = benchmark_loss(*forward(tokens, mask), tokens, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sync_device(device)
            return time.perf_counter() - t0

        return run

    runs = {
        "musicvae": step(ours_forward, torch.optim.AdamW(ours.parameters(), lr=1e-4)),
        "x_transformers": step(theirs, torch.optim.AdamW(theirs.parameters(), lr=1e-4)),
    }
    _alternate(runs, size.warmup)
    times = _alternate(runs, size.steps)
    n_tokens = size.batch_size * size.seq_len
    result = {name: _speed(t, n_tokens) for name, t in times.items()}
    result["params"] = {"musicvae": n_params(ours), "x_transformers": n_params(theirs)}
    result["ratio"] = result["musicvae"]["tokens_per_s"] / result["x_transformers"]["tokens_per_s"]
    return result


def compare_sample(size: CompareBenchSize, device: torch.device) -> dict:
    """Cached decoding on each side from the same z, alternated; plus our uncached reference."""
    torch.manual_seed(0)
    max_len = size.sample_length + 1  # BOS + the generated tokens
    ours = our_vae(size, max_len, cls=NoEOSMusicVAE).to(device).eval()
    theirs = XTransformersVAE(size, max_len).to(device).eval()
    z = torch.randn(size.sample_batch, size.latent_dim, device=device)  # (B, c)
    if size.compile:  # as sample.py compile=true: frozen weights; the same for x-transformers' decoder
        ours.compile_parts(frozen=True)
        theirs.decoder.compile(dynamic=True, options={"freezing": True})

    def ours_run(length: int, use_cache: bool) -> Callable[[], float]:
        def run() -> float:
            sync_device(device)
            t0 = time.perf_counter()
            out = sample_tokens(ours, z, SamplingConfig(max_tokens=length), use_cache=use_cache)
            sync_device(device)
            seconds = time.perf_counter() - t0
            assert all(len(seq) == length for seq in out), "a sequence stopped early: the timed work differs"
            return seconds

        return run

    def theirs_run(length: int) -> Callable[[], float]:
        def run() -> float:
            sync_device(device)
            t0 = time.perf_counter()
            out = theirs.generate(z, length, cache_kv=True)
            sync_device(device)
            seconds = time.perf_counter() - t0
            assert out.shape == (size.sample_batch, length), f"x-transformers generated {tuple(out.shape)}"
            return seconds

        return run

    def runs_at(length: int, uncached_length: int) -> dict[str, Callable[[], float]]:
        runs = {"musicvae": ours_run(length, True), "x_transformers": theirs_run(length)}
        if uncached_length:
            runs["musicvae_uncached"] = ours_run(uncached_length, False)
            if uncached_length != length:  # the cache's speed-up is measured at one length
                runs["musicvae_at_uncached_length"] = ours_run(uncached_length, True)
        return runs

    # compiled: a full-length warm-up, so that any recompilation for a new length happens untimed
    warm = size.sample_length if size.compile else min(WARMUP_SAMPLE_TOKENS, size.sample_length)
    _alternate(runs_at(warm, min(warm, size.uncached_length)), 1)
    times = _alternate(runs_at(size.sample_length, size.uncached_length), size.repeats)
    result = {"params": {"musicvae": n_params(ours), "x_transformers": n_params(theirs)}}
    for name, t in times.items():
        length = size.sample_length if name in ("musicvae", "x_transformers") else size.uncached_length
        result[name] = _speed(t, size.sample_batch * length)
    result["ratio"] = result["musicvae"]["tokens_per_s"] / result["x_transformers"]["tokens_per_s"]
    if size.uncached_length:
        cached = result.get("musicvae_at_uncached_length", result["musicvae"])
        result["cache_speedup"] = cached["tokens_per_s"] / result["musicvae_uncached"]["tokens_per_s"]
    return result


def run_compare_benchmark(size: CompareBenchSize, device: str = "cpu") -> dict:
    """-> {"device", "threads", "settings", "train": {...}, "sample": {...}} (the parts `size.what` asks for)."""
    import_x_transformers()  # before any work: say at once how to install it
    dev = torch.device(device)
    result = {"device": device, "threads": torch.get_num_threads(), "settings": asdict(size)}
    if size.what in ("train", "both"):
        result["train"] = compare_train(size, dev)
    if size.what in ("sample", "both"):
        result["sample"] = compare_sample(size, dev)
    return result


def _goal(ratio: float, goal: float) -> str:
    return f"goal ≥ {goal:g}x: {'[green]met[/green]' if ratio >= goal else '[red]not met[/red]'}"


def _params(params: dict) -> str:
    return f"{params['musicvae'] / 1e6:.3f} M ours vs {params['x_transformers'] / 1e6:.3f} M x-transformers"


def _side_by_side(heading: str, part: dict, seconds: Callable[[dict], str], goal: float, note: str = "") -> str:
    """A part's report: its heading, our row, theirs (+ `note`), the ratio against `goal`."""
    ours, theirs = part["musicvae"], part["x_transformers"]
    return (
        f"  {heading}; params {_params(part['params'])})\n"
        f"    musicvae        {seconds(ours)}  {ours['tokens_per_s']:10,.0f} tokens/s\n"
        f"    x-transformers  {seconds(theirs)}  {theirs['tokens_per_s']:10,.0f} tokens/s{note}\n"
        f"    ratio           {part['ratio']:.2f}x  ({_goal(part['ratio'], goal)})"
    )


def print_report(result: dict, console: Console) -> None:
    size = result["settings"]
    precision = "bf16 autocast training, fp32 sampling" if result["device"].startswith("cuda") else "fp32"
    if size["compile"]:
        precision += ", both sides torch.compile'd (sampling: frozen weights)"
    console.print(
        f"[bold]compare benchmark[/bold]: musicvae vs x-transformers ({result['device']}, {result['threads']} "
        f"threads, {precision}, alternated in one process, medians): {size}"
    )
    if "train" in result:
        tr = result["train"]
        heading = f"training step  ({size['batch_size']} x {size['seq_len']} tokens, {tr['musicvae']['runs']} steps per side"
        console.print(_side_by_side(heading, tr, lambda r: f"{r['seconds_median'] * 1000:8.1f} ms", GOALS["train"]))
    if "sample" in result:
        sa = result["sample"]
        ours = sa["musicvae"]
        heading = (
            f"cached sampling  ({size['sample_batch']} x {size['sample_length']} tokens, {ours['runs']} runs per side"
        )
        seconds = lambda r: f"{r['seconds_median']:8.2f} s "  # noqa: E731
        note = "  (generate, cache_kv=True, in_attn_cond)"
        console.print(_side_by_side(heading, sa, seconds, GOALS["sample"], note))
        if "cache_speedup" in sa:
            length = size["uncached_length"]
            uncached = sa["musicvae_uncached"]
            cached = sa.get("musicvae_at_uncached_length", ours)
            note = "" if length == size["sample_length"] else (
                f"\n    (at {length} tokens, not {size['sample_length']}: the speed-up grows with the length,"
                " so this understates it at the full length)"
            )  # fmt: skip
            console.print(
                f"  our KV cache vs no cache  ({size['sample_batch']} x {length} tokens)\n"
                f"    musicvae cached   {cached['tokens_per_s']:10,.0f} tokens/s\n"
                f"    musicvae uncached {uncached['tokens_per_s']:10,.0f} tokens/s\n"
                f"    speed-up        {sa['cache_speedup']:.1f}x  ({_goal(sa['cache_speedup'], GOALS['cache_speedup'])})"
                f"{note}"
            )


def main(config_dir: str, overrides: Sequence[str]) -> dict:
    """python scripts/benchmark.py compare [device=cuda] [what=train|sample|both d_model=128 layers=2 ...]"""
    size, device = size_from_overrides(CompareBenchSize, overrides)
    result = run_compare_benchmark(size, device)
    print_report(result, Console(soft_wrap=True))  # long lines stay whole: the columns line up
    return result
