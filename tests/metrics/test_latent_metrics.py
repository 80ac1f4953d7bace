"""Active units, the MI estimate and partners from other groups, on cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from musicvae.metrics.latent import (
    active_units,
    group_derangement,
    mutual_information,
    mutual_information_terms,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- active units --------------------------------------------------------------------------------


def test_active_units_constant_dims_inactive_spread_dims_active():
    n = 200
    mu = torch.zeros(n, 4)
    mu[:, 0] = 3.0  # constant: collapsed even though far from 0
    mu[:, 1] = 0.01 * torch.randn(n, generator=_gen())  # variance ~1e-4 < 0.01
    mu[:, 2] = torch.randn(n, generator=_gen(1))  # variance ~1
    mu[:, 3] = torch.linspace(-1, 1, n)  # variance ~1/3
    count, variances = active_units(mu)
    assert count == 2
    assert variances.shape == (4,)
    assert variances[0].item() == 0.0
    assert variances[1].item() < 0.01
    assert variances[3].item() == pytest.approx(torch.linspace(-1, 1, n).var().item())


def test_active_units_threshold_is_strict_and_variance_unbiased():
    mu = torch.tensor([[0.0], [2.0]])  # unbiased variance = 2
    assert active_units(mu, threshold=1.99)[0] == 1
    assert active_units(mu, threshold=2.0)[0] == 0
    assert active_units(mu)[1].item() == pytest.approx(2.0)


def test_active_units_needs_two_samples():
    with pytest.raises(ValueError):
        active_units(torch.zeros(1, 3))


# ---- mutual information --------------------------------------------------------------------------


def _mi_reference(mu, logvar, generator):
    """The same estimator written with torch.distributions, one loop per x."""
    b = mu.shape[0]
    mu, logvar = mu.double(), logvar.double()
    std = (0.5 * logvar).exp()
    z = mu + std * torch.randn(mu.shape, generator=generator, dtype=torch.float64)
    total = 0.0
    for i in range(b):
        log_q = torch.stack([Normal(mu[j], std[j]).log_prob(z[i]).sum() for j in range(b)])
        total += (log_q[i] - (torch.logsumexp(log_q, 0) - math.log(b))).item()
    return total / b


def test_mi_identical_posteriors_is_zero():
    mu = torch.randn(1, 8, generator=_gen()).expand(64, 8)
    logvar = torch.full((64, 8), -0.5)
    assert abs(mutual_information(mu, logvar, _gen(1))) < 1e-9


def test_mi_well_separated_posteriors_reach_log_b():
    b, c = 32, 4
    mu = torch.arange(b, dtype=torch.float32).unsqueeze(1).repeat(1, c) * 10.0
    logvar = torch.full((b, c), -10.0)
    assert mutual_information(mu, logvar, _gen()) == pytest.approx(math.log(b), abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_mi_never_exceeds_log_b(seed):
    g = _gen(seed)
    b = 16
    mu = torch.randn(b, 6, generator=g) * 3
    logvar = torch.randn(b, 6, generator=g) - 2
    mi = mutual_information(mu, logvar, _gen(100 + seed))
    assert mi <= math.log(b) + 1e-9
    assert mi > 0.5  # spread posteriors carry real information; guards against a constant-0 bug


def test_mi_matches_reference_implementation():
    g = _gen(3)
    mu = torch.randn(10, 3, generator=g)
    logvar = torch.randn(10, 3, generator=g) * 0.5
    ours = mutual_information(mu, logvar, _gen(7))
    ref = _mi_reference(mu, logvar, _gen(7))
    assert ours == pytest.approx(ref, abs=1e-9)


def test_mi_grows_with_separation():
    base = torch.randn(32, 2, generator=_gen())
    logvar = torch.zeros(32, 2)
    mis = [mutual_information(base * s, logvar, _gen(1)) for s in (0.0, 1.0, 5.0)]
    assert mis[0] == pytest.approx(0.0, abs=1e-9)
    assert mis[0] < mis[1] < mis[2] <= math.log(32)


def test_mi_is_reproducible_with_generator():
    mu, logvar = torch.randn(8, 3, generator=_gen()), torch.zeros(8, 3)
    assert mutual_information(mu, logvar, _gen(5)) == mutual_information(mu, logvar, _gen(5))


def test_mi_does_not_touch_autograd():
    mu = torch.randn(4, 2, requires_grad=True)
    assert isinstance(mutual_information(mu, torch.zeros(4, 2)), float)


# ---- partners from other groups, MI against a reference set ------------------------------------------


@pytest.mark.parametrize(
    "groups", [[0, 0, 1, 1, 2, 2, 2], [5, 5, 5, 1, 2, 3], list(range(9)), [0] * 10 + [1] * 10, [0, 0, 0, 0, 1]]
)
def test_group_derangement_partners_come_from_other_groups(groups):
    g = torch.tensor(groups)
    partners = group_derangement(groups, _gen(0))
    assert (g[partners] != g).all()
    if 2 * int(torch.bincount(g).max()) <= len(groups):  # balanced: a permutation, every z used once
        assert sorted(partners.tolist()) == list(range(len(groups)))


def test_group_derangement_is_seeded_and_needs_two_groups():
    groups = [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(group_derangement(groups, _gen(3)), group_derangement(groups, _gen(3)))
    assert len({tuple(group_derangement(groups, _gen(s)).tolist()) for s in range(20)}) > 1
    with pytest.raises(ValueError):
        group_derangement([4, 4, 4])


def test_mi_terms_against_a_reference_are_exact_in_any_chunking_and_split():
    g = _gen(0)
    mu, logvar = torch.randn(40, 3, generator=g), 0.5 * torch.randn(40, 3, generator=g)
    z = mu + torch.randn(40, 3, generator=g) * (0.5 * logvar).exp()
    whole = mutual_information_terms(z, mu, logvar, mu, logvar, chunk=1000)
    assert torch.allclose(mutual_information_terms(z, mu, logvar, mu, logvar, chunk=7), whole, atol=1e-12)
    # batch by batch, in another order: the same terms, so the same sum
    perm = torch.randperm(40, generator=g)
    parts = [mutual_information_terms(z[i], mu[i], logvar[i], mu, logvar) for i in perm.split(6)]
    assert torch.allclose(torch.cat(parts), whole[perm], atol=1e-12)
    assert (whole <= math.log(40) + 1e-9).all()  # each term is bounded by log N


def test_active_units_decides_in_float64_as_every_latent_statistic():
    """float32 means (as training logs them) whose variance lies just above the threshold in float64 and
    just below it once rounded to float32: an active unit, which a float32 comparison would call collapsed."""
    import numpy as np

    from musicvae.metrics.latent import active_units

    a = np.float32(0.07)
    while float(np.float32(2 * float(a) ** 2)) >= 2 * float(a) ** 2:  # a value whose 2a² rounds down in float32
        a = np.nextafter(a, np.float32(1))
    variance = 2 * float(a) ** 2  # the unbiased variance of [a, -a], exact in float64
    threshold = (float(np.float32(variance)) + variance) / 2  # between the float32 rounding and the value
    mu = torch.tensor([[a], [-a]], dtype=torch.float32)
    count, variances = active_units(mu, threshold)
    assert variances.dtype == torch.float64 and variances.item() == variance > threshold
    assert count == 1
