"""KL term of the ELBO: per-dimension KL, free bits, and the β schedules.

Everything here is a pure function (of tensors, or of the global step and a `KLConfig`), so the
schedule resumes exactly from a checkpoint's step and every value can be unit-tested.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from musicvae.config import register_schema
from musicvae.errors import UserError

SCHEDULES = ("constant", "linear", "cyclical")


def kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, σ²) ‖ N(0, I)) of each latent dim, in nats.

    mu, logvar: [B, c] → [B, c]; `0.5 * (mu² + σ² − log σ² − 1)` with σ² = exp(logvar).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)


def free_bits_kl(kl_per_dim: Tensor, free_bits: float) -> Tensor:
    """Total KL after a per-dimension floor λ on each dim's batch-mean KL: `Σ_d max(mean_b kl[b,d], λ)`.

    kl_per_dim: [B, c] → scalar. λ = 0 gives the plain batch-mean total KL. The floor is applied to the
    batch mean (as MuseMorphose), not per example, so one dim is either "free" for the whole batch or
    not; a dim below the floor contributes the constant λ and therefore gets no gradient, which is the
    point: the encoder may spend up to λ nats on it without being pushed back to the prior.
    """
    per_dim = kl_per_dim.mean(dim=0)
    if free_bits > 0:
        per_dim = per_dim.clamp(min=free_bits)
    return per_dim.sum()


def segment_kl(kl_dims: Tensor, latent_mask: Tensor | None, free_bits: float) -> tuple[Tensor, Tensor]:
    """(KL, KL after free bits), both in nats per segment, batch means.

    kl_dims: [B, c] for one latent per segment, or [B, K, c] for one per bar with latent_mask [B, K]
    (True where row b has bar k). Per bar, a segment's KL is the sum over its bars, and free bits floor
    each dim's mean over *all bar latents* of the batch (so each bar latent may keep λ nats per dim, as
    a segment latent does), times the mean number of bars per segment.
    """
    if latent_mask is None:
        return kl_dims.sum(1).mean(), free_bits_kl(kl_dims, free_bits)
    rows = kl_dims[latent_mask]  # [N, c]: the bar latents that exist
    per_segment = rows.shape[0] / kl_dims.shape[0]  # mean bars per segment
    return rows.sum() / kl_dims.shape[0], free_bits_kl(rows, free_bits) * per_segment


@dataclass
class KLConfig:
    """KL control settings (`configs/kl/*.yaml`).

    schedule: "constant" | "linear" | "cyclical"; beta: the maximum β; warmup_steps: linear ramp
    length; cycles (M) and ratio (R, share of each period spent rising) for cyclical; zero_steps: an
    initial stretch with β = 0 (every schedule, as MuseMorphose); total_steps: steps the cyclical
    schedule spans (zero_steps included), β stays at its maximum afterwards; free_bits: λ in nats per dim.
    """

    schedule: str = "constant"
    beta: float = 1.0
    warmup_steps: int = 0
    cycles: int = 4
    ratio: float = 0.5
    zero_steps: int = 0
    total_steps: int = 0
    free_bits: float = 0.0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise UserError(f"kl.schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if self.beta < 0:
            raise UserError(f"kl.beta={self.beta} must be >= 0")
        if self.warmup_steps < 0:
            raise UserError(f"kl.warmup_steps={self.warmup_steps} must be >= 0")
        if self.zero_steps < 0:
            raise UserError(f"kl.zero_steps={self.zero_steps} must be >= 0")
        if self.free_bits < 0:
            raise UserError(f"kl.free_bits={self.free_bits} must be >= 0 (nats per latent dim; 0 = off)")
        if self.schedule == "cyclical":
            if self.cycles < 1:
                raise UserError(f"kl.cycles={self.cycles} must be >= 1 for kl.schedule=cyclical")
            if not 0 < self.ratio <= 1:
                raise UserError(f"kl.ratio={self.ratio} must be in (0, 1] for kl.schedule=cyclical")
            if self.total_steps <= self.zero_steps:
                raise UserError(
                    f"kl.total_steps={self.total_steps} must exceed kl.zero_steps={self.zero_steps} "
                    "for kl.schedule=cyclical (the cycles span the steps in between); it follows "
                    "trainer.max_steps by default: set trainer.max_steps (or kl.total_steps) for an epoch-based run"
                )


def beta_at(step: int, cfg: KLConfig) -> float:
    """β at a global optimizer step (0-based); a pure function so resuming continues the schedule.

    Every schedule starts with `zero_steps` at β = 0 (constant too: "constant β after a β = 0 warm-up"
    is how a rate–distortion sweep gives each β one point).
    """
    if step < cfg.zero_steps:
        return 0.0
    if cfg.schedule == "constant":
        return float(cfg.beta)
    s = step - cfg.zero_steps
    if cfg.schedule == "linear":
        if cfg.warmup_steps == 0:
            return float(cfg.beta)
        return float(cfg.beta) * min(1.0, s / cfg.warmup_steps)
    # cyclical (Fu et al. 2019): M equal periods over the steps after the β=0 stretch; within a period β
    # rises linearly over the first R of it, then holds. A float period (as haofuml's frange_cycle_linear)
    # so total_steps need not be a multiple of M.
    if step >= cfg.total_steps:
        return float(cfg.beta)
    period = (cfg.total_steps - cfg.zero_steps) / cfg.cycles
    tau = (s % period) / period
    return float(cfg.beta) * min(1.0, tau / cfg.ratio)


class KLPerDimLog(Callback):
    """After each validation (rank 0, not the sanity check): the module's KL per latent dimension, one line of
    <run dir>/kl_per_dim.jsonl ({"step", "kl": [nats per segment per dim]}) and a wandb histogram."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        kl_dims = getattr(pl_module, "last_kl_dims", None)
        if kl_dims is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        with open(Path(trainer.default_root_dir) / "kl_per_dim.jsonl", "a") as f:
            f.write(json.dumps({"step": trainer.global_step, "kl": [round(x, 6) for x in kl_dims.tolist()]}) + "\n")
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                import wandb

                logger.experiment.log(
                    {"val/kl_per_dim": wandb.Histogram(kl_dims.numpy()), "trainer/global_step": trainer.global_step}
                )


register_schema("kl", KLConfig)
