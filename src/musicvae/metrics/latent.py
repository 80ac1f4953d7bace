"""Posterior-collapse diagnostics on encoder outputs: active units, mutual information, z-shuffle helper.

The per-dim KL lives in `musicvae.training.kl.kl_per_dim`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def active_units(mu: Tensor, threshold: float = 0.01) -> tuple[int, Tensor]:
    """Active units (Burda et al. 2015): dim u is active if Var_x(E_q[z_u | x]) > threshold.

    mu: [N, c] posterior means over the whole eval set (N >= 2) → (count, variances [c]). The variance
    is the unbiased one (as He et al.'s `calc_au`); a collapsed dim has the same mean for every x.
    """
    if mu.dim() != 2 or mu.shape[0] < 2:
        raise ValueError(f"active_units needs mu of shape [N >= 2, c], got {tuple(mu.shape)}")
    # float64: the variance of near-constant columns is a difference of close numbers.
    variances = mu.detach().double().var(dim=0, unbiased=True).to(mu.dtype)
    return int((variances > threshold).sum().item()), variances


def mutual_information(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> float:
    """Minibatch estimate of I(x; z) under q (Hoffman & Johnson 2016; He et al. 2019), in nats.

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
    b, c = mu.shape
    std = (0.5 * logvar).exp()
    # Draw on the generator's device (a CPU generator cannot feed a CUDA randn), then move.
    gen_device = generator.device if generator is not None else mu.device
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=gen_device).to(mu.device)
    z = mu + std * eps  # [B, c]
    # log q(z_i | x_j) for every pair: [B (i), B (j)]
    dev = z.unsqueeze(1) - mu.unsqueeze(0)
    log_q = -0.5 * (
        (dev.pow(2) / logvar.exp().unsqueeze(0)).sum(-1)
        + logvar.sum(-1).unsqueeze(0)
        + c * math.log(2 * math.pi)
    )
    log_q_own = log_q.diagonal()
    log_qz = torch.logsumexp(log_q, dim=1) - math.log(b)
    return float((log_q_own - log_qz).mean().item())


def derangement(n: int, generator: torch.Generator | None = None) -> Tensor:
    """A random permutation of range(n) with no fixed point (n >= 2) → LongTensor [n].

    Used to give each sample another sample's z (z-shuffle gap). Rejection sampling of uniform
    permutations: uniform over derangements, and about e ≈ 2.7 draws on average (1/e are derangements).
    """
    if n < 2:
        raise ValueError(f"a derangement needs n >= 2, got {n}")
    idx = torch.arange(n)
    while True:
        perm = torch.randperm(n, generator=generator)
        if not bool((perm == idx).any()):
            return perm
