"""KL per dim, free bits and the β schedules (values checked against torch.distributions / by hand)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from musicvae.errors import UserError
from musicvae.training.kl import KLConfig, beta_at, free_bits_kl, kl_per_dim


def test_kl_per_dim_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(5, 7, generator=g) * 2
    logvar = torch.randn(5, 7, generator=g)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros(5, 7), torch.ones(5, 7)))
    out = kl_per_dim(mu, logvar)
    assert out.shape == (5, 7)
    torch.testing.assert_close(out, ref)


def test_kl_per_dim_known_values():
    mu = torch.tensor([[0.0, 1.0, 0.0]])
    logvar = torch.tensor([[0.0, 0.0, math.log(2.0)]])
    # N(0,1): 0; N(1,1): mu²/2 = 0.5; N(0,2): 0.5*(2 - ln 2 - 1)
    expected = torch.tensor([[0.0, 0.5, 0.5 * (1.0 - math.log(2.0))]])
    torch.testing.assert_close(kl_per_dim(mu, logvar), expected)


def test_free_bits_zero_is_batch_mean_total_kl():
    kl = torch.tensor([[0.1, 1.0, 2.0], [0.3, 3.0, 0.0]])
    assert free_bits_kl(kl, 0.0).item() == pytest.approx(kl.sum(1).mean().item())
    assert free_bits_kl(kl, 0.0).item() == pytest.approx(3.2)


def test_free_bits_floors_batch_mean_per_dim():
    # batch means per dim: 0.2, 2.0, 1.0 ; floor 0.5 lifts only the first
    kl = torch.tensor([[0.1, 1.0, 2.0], [0.3, 3.0, 0.0]])
    assert free_bits_kl(kl, 0.5).item() == pytest.approx(0.5 + 2.0 + 1.0)
    # The floor is on the batch mean, not per example: dim 2 has one example at 0 but mean 1.0 > 0.5
    assert free_bits_kl(kl, 1.5).item() == pytest.approx(1.5 + 2.0 + 1.5)


def test_free_bits_dims_below_floor_get_no_gradient():
    mu = torch.tensor([[0.1, 2.0], [-0.1, 1.0]], requires_grad=True)
    logvar = torch.zeros(2, 2, requires_grad=True)
    # dim 0 mean KL = 0.005 (below λ = 0.25), dim 1 mean KL = 1.25 (above)
    free_bits_kl(kl_per_dim(mu, logvar), 0.25).backward()
    assert torch.all(mu.grad[:, 0] == 0)
    assert torch.all(logvar.grad[:, 0] == 0)
    # d/dmu of mean_b 0.5 mu² = mu / B
    torch.testing.assert_close(mu.grad[:, 1], torch.tensor([1.0, 0.5]))


def test_free_bits_zero_keeps_every_gradient():
    mu = torch.tensor([[0.1, 2.0], [-0.1, 1.0]], requires_grad=True)
    free_bits_kl(kl_per_dim(mu, torch.zeros(2, 2)), 0.0).backward()
    torch.testing.assert_close(mu.grad, mu.detach() / 2)


# ---- config validation ---------------------------------------------------------------------------


def test_unknown_schedule_names_key_and_choices():
    with pytest.raises(UserError, match=r"kl.schedule='foo' is not one of constant, linear, cyclical"):
        KLConfig(schedule="foo")


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"beta": -0.1}, "kl.beta"),
        ({"schedule": "linear", "warmup_steps": -1}, "kl.warmup_steps"),
        ({"zero_steps": -5}, "kl.zero_steps"),
        ({"free_bits": -0.25}, "kl.free_bits"),
        ({"schedule": "cyclical", "total_steps": 100, "cycles": 0}, "kl.cycles"),
        ({"schedule": "cyclical", "total_steps": 100, "ratio": 0.0}, "kl.ratio"),
        ({"schedule": "cyclical", "total_steps": 100, "ratio": 1.5}, "kl.ratio"),
        ({"schedule": "cyclical", "total_steps": 0}, "kl.total_steps"),
        ({"schedule": "cyclical", "total_steps": 100, "zero_steps": 100}, "kl.total_steps"),
    ],
)
def test_bad_values_raise_user_error_naming_key(kwargs, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        KLConfig(**kwargs)


def test_defaults():
    cfg = KLConfig()
    assert (cfg.schedule, cfg.beta, cfg.cycles, cfg.ratio, cfg.zero_steps, cfg.free_bits) == (
        "constant",
        1.0,
        4,
        0.5,
        0,
        0.0,
    )


# ---- schedules -----------------------------------------------------------------------------------


def test_constant_schedule_after_zero_steps():
    cfg = KLConfig(schedule="constant", beta=0.3, zero_steps=100)
    assert [beta_at(s, cfg) for s in (0, 99, 100, 10_000)] == [0.0, 0.0, 0.3, 0.3]
    assert beta_at(0, KLConfig(schedule="constant", beta=0.3)) == 0.3  # no warm-up: β from the first step


@pytest.mark.parametrize(
    ("step", "beta"), [(0, 0.0), (50, 0.25), (99, 0.495), (100, 0.5), (101, 0.5), (10_000, 0.5)]
)
def test_linear_schedule(step, beta):
    cfg = KLConfig(schedule="linear", beta=0.5, warmup_steps=100)
    assert beta_at(step, cfg) == pytest.approx(beta)


@pytest.mark.parametrize(("step", "beta"), [(0, 0.0), (9, 0.0), (10, 0.0), (60, 0.5), (110, 1.0), (500, 1.0)])
def test_linear_schedule_after_zero_steps(step, beta):
    cfg = KLConfig(schedule="linear", beta=1.0, warmup_steps=100, zero_steps=10)
    assert beta_at(step, cfg) == pytest.approx(beta)


def test_linear_without_warmup_is_beta_after_zero_steps():
    assert beta_at(0, KLConfig(schedule="linear", beta=0.7)) == 0.7
    cfg = KLConfig(schedule="linear", beta=0.7, zero_steps=5)
    assert [beta_at(s, cfg) for s in (0, 4, 5, 6)] == [0.0, 0.0, 0.7, 0.7]


# zero_steps 100, then 4 periods of 250 steps up to step 1100; β rises over the first half of each.
CYC = {"schedule": "cyclical", "beta": 1.0, "cycles": 4, "ratio": 0.5, "zero_steps": 100, "total_steps": 1100}


@pytest.mark.parametrize(
    ("step", "beta"),
    [
        (0, 0.0),  # start: β = 0 stretch
        (99, 0.0),
        (100, 0.0),  # first period starts at 0
        (150, 0.4),  # τ = 0.2 → 0.2 / 0.5
        (200, 0.8),  # mid-ramp
        (225, 1.0),  # τ = 0.5: top of the ramp
        (300, 1.0),  # plateau
        (349, 1.0),  # last step of period 1
        (350, 0.0),  # period boundary: back to 0
        (400, 0.4),  # same phase in period 2
        (850, 0.0),  # start of period 4
        (1099, 1.0),  # last step of the schedule
        (1100, 1.0),  # after the end: stays at β
        (50_000, 1.0),
    ],
)
def test_cyclical_schedule(step, beta):
    assert beta_at(step, KLConfig(**CYC)) == pytest.approx(beta)


def test_cyclical_scales_with_beta_and_ratio():
    cfg = KLConfig(**{**CYC, "beta": 0.2, "ratio": 1.0})
    # ratio 1: the ramp fills the period; τ = 0.5 → half of β
    assert beta_at(225, cfg) == pytest.approx(0.1)
    assert beta_at(349, cfg) == pytest.approx(0.2 * 249 / 250)
    assert beta_at(350, cfg) == 0.0


def test_cyclical_period_need_not_divide_steps():
    cfg = KLConfig(schedule="cyclical", cycles=3, ratio=0.5, total_steps=10)
    # period 10/3: step 4 is 2/3 into period 2 → τ = 0.2 → β = 0.4
    assert beta_at(4, cfg) == pytest.approx(0.4)
    assert beta_at(0, cfg) == 0.0


def test_cyclical_matches_musemorphose_layout():
    # MuseMorphose: 0 for 10k steps, then 5k-step cycles rising linearly over the first half.
    cfg = KLConfig(schedule="cyclical", zero_steps=10_000, total_steps=30_000, cycles=4, ratio=0.5)
    assert beta_at(9_999, cfg) == 0.0
    assert beta_at(11_250, cfg) == pytest.approx(0.5)
    assert beta_at(12_500, cfg) == pytest.approx(1.0)
    assert beta_at(15_000, cfg) == 0.0
    assert beta_at(16_250, cfg) == pytest.approx(0.5)


def test_beta_at_is_pure():
    cfg = KLConfig(**CYC)
    forward = [beta_at(s, cfg) for s in range(0, 1200, 7)]
    backward = [beta_at(s, cfg) for s in reversed(range(0, 1200, 7))][::-1]
    assert forward == backward
    assert all(isinstance(b, float) for b in forward)
