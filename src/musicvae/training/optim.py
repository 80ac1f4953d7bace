"""The optimizer and its learning-rate schedule (`optim` node: `OptimConfig`, schema/optim).

Three schedules, each a linear warm-up to `lr` first:
    cosine    cosine decay to lr · min_lr_ratio at the run's last step: the classic fixed-budget recipe. A
              cosine run keeps improving over its last quarter because the rate anneals there, so a curve
              read before its end says little about the model at another length.
    constant  lr after the warm-up. With weight averaging (callbacks=[default,ema]) every validation reads a
              model as good as a cosine run of that length (Hägele et al. 2024): one run, an estimate at each
              budget it passes ("anytime" evaluation). What the studies and the demo use.
    wsd       warm-up, stable, decay: constant, then a (1 − sqrt) cooldown to lr · min_lr_ratio over the last
              `cooldown` fraction of the steps (Hägele et al.'s best cooldown shape).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from musicvae.config import register_schema
from musicvae.errors import UserError

LR_SCHEDULES = ("cosine", "constant", "wsd")


@dataclass
class OptimConfig:
    """AdamW and its schedule (`optim.*`)."""

    lr: float = 3.0e-4  # the peak learning rate
    weight_decay: float = 0.01  # on weight matrices only (biases, norms and embeddings' 1-d params: none)
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100  # linear warm-up from lr/warmup_steps to lr
    schedule: str = "cosine"  # cosine | constant | wsd (see the module docstring)
    min_lr_ratio: float = 0.1  # cosine and wsd end at lr * min_lr_ratio at trainer.max_steps
    cooldown: float = 0.2  # wsd: the fraction of the steps, at the end, spent cooling down
    fused: bool | str = "auto"  # fused AdamW kernel: auto = on CUDA (not under fp16 mixed precision) | true | false

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if self.schedule not in LR_SCHEDULES:
            raise UserError(f"optim.schedule={self.schedule!r} is not one of {', '.join(LR_SCHEDULES)}")
        if self.lr <= 0:
            raise UserError(f"optim.lr={self.lr} must be > 0")
        if self.warmup_steps < 0:
            raise UserError(f"optim.warmup_steps={self.warmup_steps} must be >= 0")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UserError(f"optim.min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        if not 0 < self.cooldown <= 1:
            raise UserError(f"optim.cooldown={self.cooldown} must be in (0, 1] (a fraction of trainer.max_steps)")

    def factor(self, step: int, total: int) -> float:
        """The learning rate at optimizer step `step` of `total`, as a fraction of `lr`."""
        return lr_factor(step, self.warmup_steps, total, self.min_lr_ratio, self.schedule, self.cooldown)


def lr_factor(
    step: int, warmup: int, total: int, min_ratio: float, schedule: str = OptimConfig.schedule,
    cooldown: float = OptimConfig.cooldown,
) -> float:  # fmt: skip
    """Linear warm-up to 1, then the schedule: cosine decay to `min_ratio` at `total` steps (flat after);
    constant 1; wsd 1 until the last `cooldown` fraction of `total`, then 1 − sqrt down to `min_ratio`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "wsd":
        start = total - cooldown * total
        if step < start:
            return 1.0
        progress = min(1.0, (step - start) / max(1.0, total - start))
        return min_ratio + (1 - min_ratio) * (1 - math.sqrt(progress))
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def use_fused_adamw(setting, device: torch.device, precision: str) -> bool:
    """optim.fused: `auto` = fused AdamW on CUDA except under fp16 mixed precision, where its in-step
    unscaling rules out gradient clipping; true/false force it (true where fp16 clipping is off)."""
    if setting == "auto":
        return device.type == "cuda" and precision != "16-mixed"
    if isinstance(setting, bool):
        return setting
    raise UserError(f"optim.fused={setting!r} must be auto, true or false")


def build_optimizer(module: torch.nn.Module, cfg: OptimConfig, fused: bool, total_steps: int) -> tuple:
    """(AdamW over `module`'s parameters, its per-step LambdaLR): weight decay on matrices only."""
    decay = [p for p in module.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in module.parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=cfg.betas,
        fused=fused or None,  # None: PyTorch's default (foreach on GPU)
    )
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: cfg.factor(step, total_steps))


register_schema("optim", OptimConfig)
