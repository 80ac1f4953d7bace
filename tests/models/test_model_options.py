"""The model from its one config: each option lands where it should (`model.bias`, the two dropouts), and the
in-attention position once called `pre_norm` still loads, from a config or an old checkpoint, as what it did."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from musicvae.errors import UserError
from musicvae.models.checkpoint import check_resumable, checkpoint_tag, model_from_checkpoint, read_checkpoint
from musicvae.models.layers import Attention
from musicvae.models.vae import MusicVAE, VAEConfig

VOCAB, MAX_LEN, C = 40, 12, 8


def config(**overrides) -> VAEConfig:
    settings = dict(
        vocab_size=VOCAB, max_len=MAX_LEN, d_model=32, heads=4, encoder_layers=1, decoder_layers=2, latent_dim=C,
        ff_mult=2, dropout=0.0, conditioning={"mode": "in_attention"},
    )  # fmt: skip
    return VAEConfig(**(settings | overrides))


def build(**overrides) -> MusicVAE:
    torch.manual_seed(0)
    return MusicVAE(config(**overrides)).eval()


def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, VOCAB, (2, 7), generator=g), torch.randn(2, C, generator=g)


def stack_biases(model: MusicVAE) -> list[str]:
    """Biases of the Transformer layers (attention, FF, LayerNorms) of both stacks."""
    heads = ("encoder.to_posterior.", "decoder.cond.")  # the posterior head and z's projections: not layers
    return [n for n, _ in model.named_parameters() if n.endswith(".bias") and not n.startswith(heads)]


def test_bias_false_drops_every_layer_bias():
    with_bias, without = build(), build(bias=False)
    assert len(stack_biases(with_bias)) == 3 * 7 + 2  # 3 blocks: 2 LNs, q, kv, out, 2 FF; 2 ln_outs
    assert stack_biases(without) == []
    assert without.encoder.to_posterior.bias is not None  # the posterior head keeps its own


def test_each_dropout_lands_where_it_should():
    """The stacks are built from the config object, not positional lists where two floats could swap."""
    model = build(dropout=0.1, attn_dropout=0.2)
    attention = [m for m in model.modules() if isinstance(m, Attention)]
    assert attention and all(m.attn_dropout == 0.2 for m in attention)
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.1}


def test_pre_norm_is_read_as_pre_norm_attn(caplog):
    """`pre_norm` (the earlier name) builds pre_norm_attn, the same function, with one log line saying so."""
    with caplog.at_level(logging.WARNING, logger="musicvae.models.conditioning"):
        old = build(conditioning={"mode": "in_attention", "position": "pre_norm"})
    assert old.conditioning.position == "pre_norm_attn"
    assert "pre_norm_attn" in caplog.text and "every_sublayer" in caplog.text
    new = build(conditioning={"mode": "in_attention", "position": "pre_norm_attn"})
    tokens, z = inputs()
    with torch.no_grad():
        assert torch.equal(old.decode(tokens, z), new.decode(tokens, z))


def test_old_checkpoint_with_pre_norm_loads_and_resumes(tmp_path):
    """A checkpoint written before `model.bias` and the renaming (position: pre_norm) loads to the same logits,
    and a run with its config may resume from it."""
    model = build(conditioning={"mode": "in_attention", "position": "pre_norm_attn"})
    old_settings = config(conditioning={"mode": "in_attention", "position": "pre_norm"}).to_dict()
    del old_settings["bias"]
    ckpt = {
        "musicvae": checkpoint_tag(),
        "hyper_parameters": {"model": old_settings, "data": {"bars": 6}},
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
    }
    path = tmp_path / "old.ckpt"
    torch.save(ckpt, path)
    loaded = read_checkpoint(path)
    restored = model_from_checkpoint(loaded, path).eval()
    assert restored.conditioning.position == "pre_norm_attn" and restored.cfg.bias
    tokens, z = inputs()
    with torch.no_grad():
        assert torch.equal(restored.decode(tokens, z), model.decode(tokens, z))
    run_settings = config(conditioning={"mode": "in_attention", "position": "pre_norm"}).to_dict() | {"compile": False}
    check_resumable(loaded, {"model": run_settings, "data": {"bars": 6}}, path)


def test_unknown_position_names_the_key():
    with pytest.raises(UserError, match=r"model\.conditioning\.position='pre_norm_ff'"):
        build(conditioning={"mode": "in_attention", "position": "pre_norm_ff"})
