"""Decoding z into token sequences: batched ancestral sampling with a KV cache, top-k / top-p, slerp.

Everything here is tensors in, tensors or token lists out; MIDI and files live in sampling.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from musicvae.data import BOS_ID, EOS_ID, PAD_ID
from musicvae.errors import UserError
from musicvae.models.vae import MusicVAE


@dataclass
class SamplingConfig:
    temperature: float = 1.0  # token softmax temperature
    top_k: int = 0  # keep the k most likely tokens (0 = off)
    top_p: float = 1.0  # nucleus: smallest set with this much probability (1 = off)
    max_tokens: int = 512  # generated tokens per sequence, EOS included (capped by the model's max_len)

    def __post_init__(self):
        if self.temperature <= 0:
            raise UserError(f"temperature={self.temperature} must be > 0")
        if self.top_k < 0:
            raise UserError(f"top_k={self.top_k} must be >= 0 (0 = off)")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p={self.top_p} must be in (0, 1] (1 = off)")
        if self.max_tokens < 1:
            raise UserError(f"max_tokens={self.max_tokens} must be at least 1")


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus. logits: (B, V)."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        # drop a token when the tokens ranked above it already hold top_p (the first always stays)
        drop_sorted = (cum - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop_sorted[..., 0] = False  # the most likely token always stays
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


# inference_mode, not no_grad: no version counters or views tracked for autograd at any of the many small
# ops of a one-token step (its gain was within this VM's run-to-run noise: 0 to 15%).
@torch.inference_mode()
def sample_tokens(
    model: MusicVAE,
    z: torch.Tensor,
    cfg: SamplingConfig,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    banned: Sequence[int] = (PAD_ID, BOS_ID),
) -> list[list[int]]:
    """z (B, c) -> B token lists (no BOS, no EOS), decoded from BOS until EOS or cfg.max_tokens.

    With `use_cache` each step feeds only the newest token (per-layer KV cache); without it every
    step re-runs the whole prefix (the reference the cache is tested and benchmarked against).
    `banned` ids are never sampled: special tokens that are never training targets (EOS aside).
    """
    model.eval()
    b = z.shape[0]
    max_new = min(cfg.max_tokens, model.cfg.max_len - 1)  # BOS + max_new positions must fit
    # The sequence buffer and the KV cache are allocated once for the whole decode, written in place.
    seq = torch.full((b, 1 + max_new), PAD_ID, dtype=torch.long, device=z.device)  # (B, 1 + max_new)
    seq[:, 0] = BOS_ID
    cache = model.decoder.new_cache(model.conditioning.n_prefix + 1 + max_new) if use_cache else None
    done = torch.zeros(b, dtype=torch.bool, device=z.device)
    banned = torch.tensor(list(banned), dtype=torch.long, device=z.device)
    length = 1
    for _ in range(max_new):
        step_in = seq[:, length - 1 : length] if use_cache else seq[:, :length]
        logits = model.decode(step_in, z, cache)[:, -1].float()  # (B, V)
        logits.index_fill_(1, banned, float("-inf"))
        logits = filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p)
        nxt = _draw(logits, generator).masked_fill(done, PAD_ID)  # (B,)
        seq[:, length] = nxt
        length += 1
        done |= nxt == EOS_ID
        if done.all():
            break
    seq = seq[:, :length]
    out = []
    for row in seq[:, 1:].tolist():
        out.append(row[: row.index(EOS_ID)] if EOS_ID in row else [t for t in row if t != PAD_ID])
    return out


class NonFiniteModel(UserError):
    """The model's next-token probabilities hold NaN or inf: its weights are not usable."""


def _draw(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row from softmax(logits) (B, V) -> (B,); a clear error when they are not finite."""
    probs = torch.softmax(logits, dim=-1)
    try:
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    except RuntimeError:
        if torch.isfinite(probs).all():
            raise
        raise NonFiniteModel(
            "the model gives NaN or infinite next-token probabilities (its weights are not finite: the "
            "training diverged); use an earlier checkpoint, or retrain with a lower optim.lr"
        ) from None


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between a and b (c,) at t in [0, 1] (MusicVAE); linear if nearly parallel."""
    a_n, b_n = a / a.norm().clamp_min(1e-8), b / b.norm().clamp_min(1e-8)
    omega = torch.arccos((a_n * b_n).sum().clamp(-1.0, 1.0))
    if omega.abs() < 1e-4:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
