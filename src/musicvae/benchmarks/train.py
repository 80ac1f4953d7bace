"""Training throughput: tokens/s and achieved model FLOP/s as a share of a matmul peak measured in the same run.

Model FLOPs per trained token (the PaLM / nanoGPT estimate): 6 × (non-embedding parameters + the
output head) for the matmuls of forward and backward, plus 12 × layers × d_model × T for attention
scores and values (encoder and decoder, counted without the causal half-saving). The peak is the
best of a few large fp32 (or bf16 on GPU) matmuls on the same device.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from rich.console import Console

from musicvae.benchmarks import size_from_overrides
from musicvae.models.vae import MusicVAE, VAEConfig
from musicvae.training.kl import kl_per_dim
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


def matmul_peak_flops(device: torch.device, dtype: torch.dtype, n: int | None = None, repeats: int = 5) -> float:
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


def model_flops_per_token(model: MusicVAE, seq_len: int) -> float:
    cfg = model.cfg
    embeddings = model.encoder.embed.tok.weight.numel() + model.encoder.embed.pos.weight.numel()
    embeddings += model.decoder.embed.pos.weight.numel()  # decoder's token table doubles as the head
    dense = sum(p.numel() for p in model.parameters()) - embeddings
    attention = 12 * (cfg.encoder_layers + cfg.decoder_layers) * cfg.d_model * seq_len
    return 6 * dense + attention


def benchmark_loss(
    logits: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The VAE loss a training step pays for: token NLL per segment + KL (β = 1, no free bits).

    logits (B, T-1, V) predict tokens[:, 1:]; mu, logvar (B, c); tokens, mask (B, T).
    """
    nll = VAEModule.token_nll(logits, tokens, mask).sum() / tokens.shape[0]
    return nll + kl_per_dim(mu.float(), logvar.float()).sum(1).mean()


def run_train_benchmark(size: TrainBenchSize, device: str = "cpu") -> dict:
    """Time `size.steps` optimizer steps of the real loss on random tokens; medians over steps."""
    dev = torch.device(device)
    torch.manual_seed(0)
    cfg = VAEConfig(
        vocab_size=size.vocab_size, max_len=size.seq_len, d_model=size.d_model, heads=size.heads,
        encoder_layers=size.layers, decoder_layers=size.layers, latent_dim=size.latent_dim,
        conditioning={"mode": size.mode}, dropout=size.dropout, attn_dropout=size.attn_dropout,
    )  # fmt: skip
    model = MusicVAE(cfg).to(dev).train()
    if size.compile:
        model.compile_parts()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=size.fused or None)
    tokens = torch.randint(3, size.vocab_size, (size.batch_size, size.seq_len), device=dev)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
    times = []
    for step in range(size.warmup + size.steps):
        sync_device(dev)
        t0 = time.perf_counter()
        with autocast:
            out = model(tokens, mask, sample=True)
            loss = benchmark_loss(out.logits, out.mu, out.logvar, tokens, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync_device(dev)
        if step >= size.warmup:
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    tokens_per_s = size.batch_size * size.seq_len / step_s
    achieved = model_flops_per_token(model, size.seq_len) * tokens_per_s
    peak_dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    peak = matmul_peak_flops(dev, peak_dtype)
    return {
        "device": device,
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
    """python scripts/benchmark.py train [device=cuda] [d_model=512 layers=6 batch_size=32 seq_len=512 ...]"""
    size, device = size_from_overrides(TrainBenchSize, overrides)
    result = run_train_benchmark(size, device)
    console = Console()
    console.print(f"[bold]train benchmark[/bold] ({device}, {torch.get_num_threads()} threads): {asdict(size)}")
    console.print(
        f"  {result['params_M']:.2f} M params | step {result['step_s_median'] * 1000:.0f} ms (median of {size.steps})"
        f" | {result['tokens_per_s']:,.0f} tokens/s\n"
        f"  model {result['model_tflops'] * 1000:.1f} GFLOP/s = {result['mfu'] * 100:.1f}% of the matmul peak"
        f" measured in this run ({result['matmul_peak_tflops'] * 1000:.0f} GFLOP/s)"
    )
    return result
