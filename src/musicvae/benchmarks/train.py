"""Training throughput: tokens/s and achieved model FLOP/s as a share of a matmul peak measured in the same run.

Model FLOPs per trained token (the PaLM / nanoGPT estimate): 6 × (non-embedding parameters + the
output head) for the matmuls of forward and backward, plus 12 × layers × d_model × T for attention
scores and values (encoder and decoder, counted without the causal half-saving), less what summary
pooling's last encoder layer skips (it computes the pooled positions only). The peak is the
best of a few large fp32 (or bf16 on GPU) matmuls on the same device.

`latent=bar`: one latent per bar. Rows are framed BOS ... EOS with a Bar token every (seq_len - 2) // bars
tokens (the last bar takes the rest), and the model gets each token's bar (`bar_index`), as in training.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from rich.console import Console

from musicvae.benchmarks import BAR_ID, check_latent_settings, size_from_overrides
from musicvae.data.loading import bar_index
from musicvae.errors import UserError
from musicvae.models.vae import MusicVAE, VAEConfig
from musicvae.tokens import BOS_ID, EOS_ID
from musicvae.training.kl import kl_per_dim, segment_kl
from musicvae.training.module import VAEModule


@dataclass
class TrainBenchSize:
    d_model: int = 256
    layers: int = 4
    heads: int = 4
    latent_dim: int = 64
    vocab_size: int = 300
    batch_size: int = 16
    seq_len: int = 256
    mode: str = "in_attention"
    dropout: float = 0.1  # the model's defaults (configs/model/transformer.yaml)
    attn_dropout: float = 0.0
    compile: bool = False  # MusicVAE.compile_parts (model.compile); the warm-up steps absorb the compile
    fused: bool = False  # fused AdamW (optim.fused)
    steps: int = 8
    warmup: int = 2
    latent: str = "segment"  # segment: one z per segment | bar: one z per bar
    bars: int = 4  # latent=bar: bars per row (data.bars' default; ignored for latent=segment)

    def __post_init__(self):
        check_latent_settings(self.latent, self.bars, self.vocab_size)
        if self.latent == "bar" and self.bars > self.seq_len - 2:
            raise UserError(
                f"benchmark setting bars={self.bars} must be at most seq_len - 2 = {self.seq_len - 2} "
                "(BOS and EOS take two positions; every bar holds at least its Bar token)"
            )


def matmul_peak_flops(
    device: torch.device, dtype: torch.dtype, n: int | None = None, repeats: int = 5
) -> float:
    """Best FLOP/s of an n×n @ n×n matmul on this device (n: 2048 on CPU, 8192 on a GPU, which a
    2048 matmul leaves half idle)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    for _ in range(repeats):
        sync_device(device)
        t0 = time.perf_counter()
        a @ b
        sync_device(device)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def model_flops_per_token(model: MusicVAE, seq_len: int, pooled_per_row: int = 1) -> float:
    """Matmul FLOPs of one trained token (forward + backward). With summary pooling the last encoder layer
    computes only the `pooled_per_row` pooled positions (keys and values for all), so only their share
    of its other matmuls and of its attention is counted: the work done, not what a full layer would do."""
    cfg = model.cfg
    embeddings = model.encoder.embed.tok.weight.numel() + model.encoder.embed.pos.weight.numel()
    embeddings += model.decoder.embed.pos.weight.numel()  # decoder's token table doubles as the head
    dense = sum(p.numel() for p in model.parameters()) - embeddings
    attention = 12 * (cfg.encoder_layers + cfg.decoder_layers) * cfg.d_model * seq_len
    if cfg.pooling == "summary" and cfg.encoder_layers:
        last = model.encoder.blocks[-1]
        per_position = sum(p.numel() for p in last.parameters()) - sum(p.numel() for p in last.attn.kv.parameters())
        skipped = 1 - min(pooled_per_row, seq_len) / seq_len
        dense -= per_position * skipped
        attention -= 12 * cfg.d_model * seq_len * skipped
    return 6 * dense + attention


def benchmark_loss(
    logits: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    latent_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The VAE loss a training step pays for: token NLL per segment + KL (β = 1, no free bits).

    logits (B, T-1, V) predict tokens[:, 1:]; mu, logvar (B, c), or (B, K, c) per bar with latent_mask
    (B, K); tokens, mask (B, T).
    """
    nll = VAEModule.token_nll(logits, tokens, mask).sum() / tokens.shape[0]
    kl, _ = segment_kl(kl_per_dim(mu.float(), logvar.float()), latent_mask, free_bits=0.0)
    return nll + kl


def synthetic_batch(
    size: TrainBenchSize, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Seeded random tokens, mask, bars (B, T) (bars None for latent=segment: random ids, no framing).

    latent=bar: BOS, then `bars` bars each opened by a Bar token (the other ids never Bar), then EOS.
    """
    b, t = size.batch_size, size.seq_len
    if size.latent == "segment":
        tokens = torch.randint(3, size.vocab_size, (b, t), device=device)
        return tokens, torch.ones_like(tokens, dtype=torch.bool), None
    tokens = torch.randint(BAR_ID + 1, size.vocab_size, (b, t), device=device)
    tokens[:, 0], tokens[:, -1] = BOS_ID, EOS_ID
    every = (t - 2) // size.bars
    tokens[:, 1 : 1 + size.bars * every : every] = BAR_ID
    return tokens, torch.ones_like(tokens, dtype=torch.bool), bar_index(tokens, [BAR_ID])


def run_train_benchmark(size: TrainBenchSize, device: str = "cpu") -> dict:
    """Time `size.steps` optimizer steps of the real loss on random tokens; medians over steps."""
    dev = torch.device(device)
    torch.manual_seed(0)
    cfg = VAEConfig(
        vocab_size=size.vocab_size, max_len=size.seq_len, d_model=size.d_model, heads=size.heads,
        encoder_layers=size.layers, decoder_layers=size.layers, latent_dim=size.latent_dim,
        conditioning={"mode": size.mode}, dropout=size.dropout, attn_dropout=size.attn_dropout,
        **({"latent": "bar", "max_bars": size.bars} if size.latent == "bar" else {}),
    )  # fmt: skip
    model = MusicVAE(cfg).to(dev).train()
    if size.compile:
        model.compile_parts()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=size.fused or None)
    tokens, mask, bars = synthetic_batch(size, dev)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
    times = []
    for step in range(size.warmup + size.steps):
        sync_device(dev)
        t0 = time.perf_counter()
        with autocast:
            out = model(tokens, mask, sample=True, bars=bars)
            loss = benchmark_loss(out.logits, out.mu, out.logvar, tokens, mask, out.latent_mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync_device(dev)
        if step >= size.warmup:
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    tokens_per_s = size.batch_size * size.seq_len / step_s
    pooled_per_row = size.bars if size.latent == "bar" else 1
    achieved = model_flops_per_token(model, size.seq_len, pooled_per_row) * tokens_per_s
    peak_dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    peak = matmul_peak_flops(dev, peak_dtype)
    return {
        "device": device,
        "latent": size.latent,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "step_s_median": step_s,
        "tokens_per_s": tokens_per_s,
        "model_tflops": achieved / 1e12,
        "matmul_peak_tflops": peak / 1e12,
        "mfu": achieved / peak,
    }


def sync_device(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer reads the work done (nothing to wait for on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(config_dir: str, overrides: Sequence[str]) -> dict:
    """python scripts/benchmark.py train [device=cuda] [d_model=512 layers=6 batch_size=32 seq_len=512 ...]
    [latent=bar bars=4]"""
    size, device = size_from_overrides(TrainBenchSize, overrides)
    result = run_train_benchmark(size, device)
    console = Console()
    console.print(
        f"[bold]train benchmark[/bold] ({device}, {torch.get_num_threads()} threads): {asdict(size)}"
    )
    console.print(
        f"  {result['params_M']:.2f} M params | step {result['step_s_median'] * 1000:.0f} ms (median of {size.steps})"
        f" | {result['tokens_per_s']:,.0f} tokens/s\n"
        f"  model {result['model_tflops'] * 1000:.1f} GFLOP/s = {result['mfu'] * 100:.1f}% of the matmul peak"
        f" measured in this run ({result['matmul_peak_tflops'] * 1000:.0f} GFLOP/s)"
    )
    return result
