"""Posterior-collapse diagnostics on encoder outputs: active units, mutual information, z-gap partners.

The per-dim KL lives in `musicvae.training.kl.kl_per_dim`. `LatentEvalConfig` holds the defaults of the
settings these read from train.yaml's `eval` node (schema/latent_eval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from musicvae.config import register_schema


@dataclass(frozen=True)
class LatentEvalConfig:
    """train.yaml's `eval` node, less `eval.fidelity` (FidelityConfig): how the latent statistics are read."""

    au_threshold: float = 0.01  # a latent dim is active if Var_x(mu) exceeds this (Burda et al. 2015)


register_schema("latent_eval", LatentEvalConfig)


def active_units(mu: Tensor, threshold: float = LatentEvalConfig.au_threshold) -> tuple[int, Tensor]:
    """Active units (Burda et al. 2015): dim u is active if Var_x(E_q[z_u | x]) > threshold.

    mu: [N, c] posterior means over the whole eval set (N >= 2) → (count, variances [c] float64). The
    variance is the unbiased one (as He et al.'s `calc_au`); a collapsed dim has the same mean for every x.
    Computed and compared in float64, as every latent statistic here (MI, the log densities): the variance
    of near-constant columns is a difference of close numbers, and a float32 cast could move a variance
    that lies just above the threshold below it.
    """
    if mu.dim() != 2 or mu.shape[0] < 2:
        raise ValueError(f"active_units needs mu of shape [N >= 2, c], got {tuple(mu.shape)}")
    variances = mu.detach().double().var(dim=0, unbiased=True)
    return int((variances > threshold).sum().item()), variances


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag(exp(logvar))) over the last dim, broadcasting the others, in float64.

    z, mu, logvar [..., c] → [...]: [B, c] each gives one density per row; z[:, None] against mu[None]
    gives every pair [B, N].
    """
    z, mu, logvar = z.double(), mu.double(), logvar.double()
    return -0.5 * (((z - mu).pow(2) / logvar.exp() + logvar).sum(-1) + z.shape[-1] * math.log(2 * math.pi))


def mutual_information_terms(
    z: Tensor, mu: Tensor, logvar: Tensor, ref_mu: Tensor, ref_logvar: Tensor, chunk: int = 256
) -> Tensor:
    """Per-sample terms of the MI estimate against a reference set of posteriors, in nats → [B] float64.

    z [B, c] with z_i ~ q(z | x_i) of posterior (mu_i, logvar_i) [B, c]; ref_mu/ref_logvar [N, c] are the
    posteriors of the whole evaluation set (x_i among them). Term i = log q(z_i | x_i) − log q(z_i) with the
    aggregate posterior q(z) = (1/N) Σ_j q(z | x_j). I(x; z) ≈ the mean of the terms over the N samples.
    The reference is walked in chunks with a running logsumexp, so memory is O(B · chunk · c) whatever N:
    summing the terms batch by batch gives the whole-set estimate exactly, in any batch order.
    """
    own = gaussian_log_density(z, mu, logvar)  # [B]
    acc = torch.full((len(z),), -math.inf, dtype=torch.float64, device=z.device)
    for start in range(0, len(ref_mu), chunk):
        block = gaussian_log_density(  # [B, chunk]
            z.unsqueeze(1), ref_mu[start : start + chunk].unsqueeze(0), ref_logvar[start : start + chunk].unsqueeze(0)
        )
        acc = torch.logaddexp(acc, torch.logsumexp(block, dim=1))
    return own - (acc - math.log(len(ref_mu)))


def mutual_information(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> float:
    """Estimate of I(x; z) under q over one set of posteriors (Hoffman & Johnson 2016; He et al. 2019), nats.

    mu, logvar: [B, c] for B different x. With one z_i ~ q(z | x_i) per x:
        I ≈ mean_i [ log q(z_i | x_i) − log q(z_i) ],   log q(z_i) ≈ logsumexp_j log q(z_i | x_j) − log B.
    Unlike He et al.'s `calc_mi` (analytic entropy for the first term), both terms use the same sample,
    so each summand is ≤ log B exactly (the j = i term alone bounds the logsumexp) and identical
    posteriors give exactly 0 up to rounding. Small negative values near 0 are estimator noise.
    """
    if mu.shape != logvar.shape or mu.dim() != 2:
        raise ValueError(
            f"mu and logvar must both be [B, c], got {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
    mu = mu.detach().double()
    logvar = logvar.detach().double()
    # Draw on the generator's device (a CPU generator cannot feed a CUDA randn), then move.
    gen_device = generator.device if generator is not None else mu.device
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=gen_device).to(mu.device)
    z = mu + (0.5 * logvar).exp() * eps  # [B, c]
    return float(mutual_information_terms(z, mu, logvar, mu, logvar).mean().item())


def group_derangement(groups, generator: torch.Generator | None = None) -> Tensor:
    """For each item, a partner from another group (e.g. another piece) → LongTensor [n] of indices.

    groups: [n] ints (a piece id per segment). When no group holds more than half of the items, the
    result is a permutation (every item is some item's partner exactly once, so the partners' z are the
    aggregate posterior's draws): items are ordered by group, groups and items within them in random
    order, and each is paired with the item `m` places on (m = the largest group's size), which always
    lies in another group. Otherwise (one dominant piece) each item draws a partner uniformly from the
    other groups' items. Raises ValueError when there is a single group.
    """
    groups = torch.as_tensor(groups, dtype=torch.long).flatten()
    n = len(groups)
    labels, counts = torch.unique(groups, return_counts=True)
    if len(labels) < 2:
        raise ValueError("partners from other groups need at least two groups")
    largest = int(counts.max())
    if 2 * largest <= n:
        label_order = labels[torch.randperm(len(labels), generator=generator)]
        rank = torch.empty(len(labels), dtype=torch.long)
        rank[torch.searchsorted(labels, label_order)] = torch.arange(len(labels))
        within = torch.randperm(n, generator=generator)  # random order inside each group
        key = rank[torch.searchsorted(labels, groups[within])]
        order = within[torch.sort(key, stable=True).indices]  # grouped, groups in random order
        partners = torch.empty(n, dtype=torch.long)
        partners[order] = order.roll(-largest)
        return partners
    partners = torch.empty(n, dtype=torch.long)
    for i in range(n):
        others = torch.nonzero(groups != groups[i]).flatten()
        partners[i] = others[torch.randint(len(others), (1,), generator=generator)]
    return partners
