"""Invalid model configurations raise one clear UserError naming the offending key."""

from __future__ import annotations

import pytest

from musicvae.errors import UserError
from musicvae.models.vae import MusicVAE, VAEConfig


def build(conditioning=None, **overrides) -> MusicVAE:
    kwargs = dict(
        vocab_size=40, max_len=12, d_model=32, heads=4, encoder_layers=1, decoder_layers=2, latent_dim=8,
        ff_mult=2, dropout=0.0, pooling="summary", conditioning=conditioning or {"mode": "in_attention"},
    )  # fmt: skip
    kwargs.update(overrides)
    return MusicVAE(VAEConfig(**kwargs))


@pytest.mark.parametrize(
    "conditioning, key",
    [
        ({"mode": "transformer_xl"}, "mode"),
        ({"mode": "in_attention", "n_memory": 4}, "n_memory"),
        ({"mode": "cross_attention", "position": "post_norm"}, "position"),
        ({"mode": "cross_attention", "per_layer": True}, "per_layer"),
        ({"mode": "none", "position": "post_norm"}, "position"),
        ({"mode": "embedding", "bias": True}, "bias"),
        ({"mode": "prefix", "n_memory": 1}, "n_memory"),
        ({"mode": "in_attention", "position": "before_ff"}, "position"),
        ({"mode": "cross_attention", "n_memory": 0}, "n_memory"),
        ({"mode": "cross_attention", "n_memory": -2}, "n_memory"),
    ],
)
def test_bad_conditioning(conditioning, key):
    with pytest.raises(UserError, match=rf"model\.conditioning\.{key}\b"):
        build(conditioning)


def test_unknown_mode_lists_choices():
    with pytest.raises(UserError) as err:
        build({"mode": "nope"})
    for mode in ("none", "embedding", "prefix", "in_attention", "cross_attention"):
        assert mode in str(err.value)


def test_bad_position_lists_choices():
    with pytest.raises(UserError) as err:
        build({"mode": "in_attention", "position": "sideways"})
    for pos in ("post_norm", "pre_norm_attn", "every_sublayer", "residual"):
        assert pos in str(err.value)


def test_d_model_not_divisible_by_heads():
    with pytest.raises(UserError, match=r"model\.d_model.*model\.heads"):
        build(d_model=30, heads=4)


def test_unknown_pooling():
    with pytest.raises(UserError, match=r"model\.pooling"):
        build(pooling="max")


@pytest.mark.parametrize(
    "key", ["d_model", "heads", "encoder_layers", "decoder_layers", "latent_dim", "max_len"]
)
def test_non_positive_sizes(key):
    with pytest.raises(UserError, match=rf"model\.{key}\b"):
        build(**{key: 0})


@pytest.mark.parametrize(
    "conditioning",
    [
        {"mode": "none"},
        {"mode": "embedding"},
        {"mode": "prefix"},
        {"mode": "in_attention", "position": "residual", "per_layer": True, "bias": True},
        {"mode": "cross_attention", "n_memory": 1},
    ],
)
def test_valid_conditionings_build(conditioning):
    build(conditioning)
