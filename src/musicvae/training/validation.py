"""The validation's state and sums, apart from the LightningModule that runs the hooks (training/module.py):
what is drawn once for the fixed val sample, the whole sample's posteriors during one validation, and the
streamed sums every metric is a ratio of."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchmetrics import Metric


@dataclass
class ValSampleFixed:
    """What is drawn once for the fixed val sample (`sample`, the datamodule's) and kept between validations."""

    sample: object  # the datamodule's val sample these were drawn for
    eps: torch.Tensor  # (N, c) or (N, K, c): the noise of z ~ q(z|x), per position
    partners: torch.Tensor | None  # (N,): each position's z-gap partner (a segment of another piece)
    attributes: torch.Tensor | None  # (N, [K,] A): model.attributes, the segments' own classes


@dataclass
class ValReference:
    """The whole val sample as one validation sees it, float32, looked up by position in each batch."""

    mu: torch.Tensor  # (N, c), or (N, K, c) per bar (absent bars zero)
    logvar: torch.Tensor  # like mu
    eps: torch.Tensor  # like mu: ValSampleFixed.eps on the device
    present: torch.Tensor  # (N, K) bool: which latents exist ((N, 1), all, per segment)
    partners: torch.Tensor | None  # (N,) or None (one piece only: no z-gap)
    attributes: torch.Tensor | None  # (N, [K,] A) or None


class ValidationSums(Metric):
    """The validation's sums (float64): token NLL under z = mu, z ~ q and a partner's z, tokens, correct tokens,
    segments and MI terms. torchmetrics sums them across DDP ranks when computed, so every metric is a ratio
    of global sums: no metric depends on how the sample was split over ranks or batches."""

    KEYS = ("nll", "nll_sampled", "nll_partner", "tokens", "correct", "segments", "mi")
    full_state_update = False

    def __init__(self):
        super().__init__()
        for key in self.KEYS:
            self.add_state(key, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, **sums: torch.Tensor) -> None:
        for key, value in sums.items():
            setattr(self, key, getattr(self, key) + value.detach().double())

    def compute(self) -> dict[str, torch.Tensor]:
        return {key: getattr(self, key) for key in self.KEYS}


def existing(latents: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Latents (N, c) or (N, K, c) -> (rows, c): the ones `present` (N, 1) or (N, K) marks as existing."""
    return latents.reshape(-1, latents.shape[-1])[present.reshape(-1)]
