"""In-attention conditioning adds W z at every decoder layer, at the configured position.

Hooks capture, for each decoder block i: its residual input x (pre-hook on the block), the
self-attention input h and output a (hooks on `blocks[i].attn`) and the block output; each position is
then checked against its own formula, with w = W_k z (k = i with `per_layer`, else 0):

    post_norm:      h = LN(x) + w,   stream after the hook = x
    pre_norm_attn:  h = LN(x + w),   stream after the hook = x
    every_sublayer: h = LN(x + w),   stream after the hook = x
    residual:       h = LN(x + w),   stream after the hook = x + w
and block output = s + FF(LN_ff(s)) with s = stream + a; every_sublayer: s + FF(LN_ff(s + w)).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from musicvae.models.vae import MusicVAE, VAEConfig

VOCAB, MAX_LEN, D, C, LAYERS = 40, 12, 32, 8, 3



EXACT = dict(rtol=0, atol=1e-6)


def make_model(conditioning: dict) -> MusicVAE:
    torch.manual_seed(0)
    cfg = VAEConfig(
        vocab_size=VOCAB, max_len=MAX_LEN, d_model=D, heads=4, encoder_layers=1, decoder_layers=LAYERS,
        latent_dim=C, ff_mult=2, dropout=0.1, pooling="summary", conditioning=dict(conditioning),
    )  # fmt: skip
    return MusicVAE(cfg).eval()


def capture(model: MusicVAE, tokens: torch.Tensor, z: torch.Tensor) -> list[dict]:
    """Per decoder layer: x (block input), h (attention input), a (attention output), f (feed-forward input),
    out (block output)."""
    records = [{} for _ in model.decoder.blocks]
    handles = []
    for i, block in enumerate(model.decoder.blocks):
        rec = records[i]

        def block_pre(module, args, rec=rec):
            rec["x"] = args[1].detach().clone()  # (index, x, cond, state, memory, self_cache, cross_cache)

        def block_post(module, args, out, rec=rec):
            rec["out"] = out.detach().clone()

        def attn_pre(module, args, rec=rec):
            rec["h"] = args[0].detach().clone()

        def attn_post(module, args, out, rec=rec):
            rec["a"] = out.detach().clone()

        def ff_pre(module, args, rec=rec):
            rec["f"] = args[0].detach().clone()

        handles += [
            block.register_forward_pre_hook(block_pre),
            block.register_forward_hook(block_post),
            block.attn.register_forward_pre_hook(attn_pre),
            block.attn.register_forward_hook(attn_post),
            block.ff.register_forward_pre_hook(ff_pre),
        ]
    try:
        with torch.no_grad():
            model.decode(tokens, z)
    finally:
        for h in handles:
            h.remove()
    assert all(len(r) == 5 for r in records), "a hook did not fire"
    return records


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (2, 7), generator=g), torch.randn(2, C, generator=g)


def block_rest(block: nn.Module, stream: torch.Tensor, a: torch.Tensor, ff_w: torch.Tensor | None = None) -> torch.Tensor:
    """What follows self-attention in a block without cross-attention; `ff_w`: added before the FF's norm."""
    s = stream + a
    return s + block.ff(block.ln_ff(s if ff_w is None else s + ff_w))


POSITIONS = ["post_norm", "pre_norm_attn", "every_sublayer", "residual"]


@pytest.mark.parametrize("per_layer", [False, True], ids=["shared", "per_layer"])
@pytest.mark.parametrize("position", POSITIONS)
def test_injection_formula_at_every_layer(position, per_layer):
    model = make_model({"mode": "in_attention", "position": position, "per_layer": per_layer})
    tokens, z = inputs()
    records = capture(model, tokens, z)
    with torch.no_grad():
        for i, (block, rec) in enumerate(zip(model.decoder.blocks, records, strict=True)):
            w = model.conditioning.proj[i if per_layer else 0](z).unsqueeze(1)  # (B, 1, D)
            x, h, a, out = rec["x"], rec["h"], rec["a"], rec["out"]
            ln = block.ln_attn
            h_expected = ln(x) + w if position == "post_norm" else ln(x + w)
            torch.testing.assert_close(h, h_expected, **EXACT, msg=f"layer {i}: attention input")
            stream = x + w if position == "residual" else x
            ff_w = w if position == "every_sublayer" else None
            torch.testing.assert_close(
                out, block_rest(block, stream, a, ff_w), **EXACT, msg=f"layer {i}: residual stream and FF input"
            )
            # the other placements would give something measurably different (the checks can fail)
            if position == "post_norm":
                assert (h - ln(x + w)).abs().max() > 1e-3
            else:
                assert (h - (ln(x) + w)).abs().max() > 1e-3
            other_stream = x if position == "residual" else x + w
            assert (out - block_rest(block, other_stream, a, ff_w)).abs().max() > 1e-3
            # z before the FF's norm with every_sublayer only
            s = stream + a
            f_with, f_without = block.ln_ff(s + w), block.ln_ff(s)
            torch.testing.assert_close(rec["f"], f_with if position == "every_sublayer" else f_without, **EXACT)
            assert (f_with - f_without).abs().max() > 1e-3
            # and without z the attention input would differ too
            assert (h - ln(x)).abs().max() > 1e-3


def test_per_layer_projections_differ_and_are_each_used():
    """With per_layer, layer i uses proj[i], not proj[0]: the formula with proj[0] fails at layers > 0."""
    model = make_model({"mode": "in_attention", "position": "post_norm", "per_layer": True})
    tokens, z = inputs()
    records = capture(model, tokens, z)
    with torch.no_grad():
        w0 = model.conditioning.proj[0](z).unsqueeze(1)
        for i in range(1, LAYERS):
            rec, ln = records[i], model.decoder.blocks[i].ln_attn
            assert (rec["h"] - (ln(rec["x"]) + w0)).abs().max() > 1e-3


def test_bias_is_part_of_w():
    model = make_model({"mode": "in_attention", "position": "post_norm", "bias": True})
    with torch.no_grad():
        model.conditioning.proj[0].bias.normal_()
    tokens, z = inputs()
    records = capture(model, tokens, z)
    with torch.no_grad():
        w = model.conditioning.proj[0](z).unsqueeze(1)
        for block, rec in zip(model.decoder.blocks, records, strict=True):
            torch.testing.assert_close(rec["h"], block.ln_attn(rec["x"]) + w, **EXACT)


@pytest.mark.parametrize("per_layer", [False, True], ids=["shared", "per_layer"])
@pytest.mark.parametrize("position", POSITIONS)
def test_attention_input_changes_with_z_at_every_layer(position, per_layer):
    model = make_model({"mode": "in_attention", "position": position, "per_layer": per_layer})
    tokens, z1 = inputs(1)
    z2 = torch.randn(2, C, generator=torch.Generator().manual_seed(7))
    r1, r2 = capture(model, tokens, z1), capture(model, tokens, z2)
    for i in range(LAYERS):
        diff = (r1[i]["h"] - r2[i]["h"]).abs().amax(-1)  # (B, T)
        assert diff.min() > 1e-3, f"layer {i}: some position's attention input ignores z"


def test_injection_at_first_layer_input_is_not_in_embeddings():
    """Every position: the stream entering layer 0 is the plain token embedding (z comes in the hook)."""
    for position in POSITIONS:
        model = make_model({"mode": "in_attention", "position": position})
        tokens, z = inputs()
        records = capture(model, tokens, z)
        with torch.no_grad():
            torch.testing.assert_close(records[0]["x"], model.decoder.embed(tokens), **EXACT)


@pytest.mark.parametrize(
    "conditioning", [{"mode": "none"}, {"mode": "embedding"}, {"mode": "prefix"}], ids=lambda c: c["mode"]
)
def test_other_modes_attention_input_is_plain_norm(conditioning):
    """Outside in-attention, every layer's attention input is LN(x) and the block adds nothing of z."""
    model = make_model(conditioning)
    tokens, z = inputs()
    records = capture(model, tokens, z)
    with torch.no_grad():
        for block, rec in zip(model.decoder.blocks, records, strict=True):
            torch.testing.assert_close(rec["h"], block.ln_attn(rec["x"]), **EXACT)
            torch.testing.assert_close(rec["out"], block_rest(block, rec["x"], rec["a"]), **EXACT)


def test_cross_attention_attention_input_is_plain_norm():
    model = make_model({"mode": "cross_attention", "n_memory": 2})
    tokens, z = inputs()
    records = capture(model, tokens, z)
    with torch.no_grad():
        for block, rec in zip(model.decoder.blocks, records, strict=True):
            torch.testing.assert_close(rec["h"], block.ln_attn(rec["x"]), **EXACT)


def test_embedding_mode_adds_z_to_first_layer_input_only():
    model = make_model({"mode": "embedding"})
    tokens, z = inputs()
    records = capture(model, tokens, z)
    with torch.no_grad():
        expected = model.decoder.embed(tokens) + model.conditioning.proj(z).unsqueeze(1)
        torch.testing.assert_close(records[0]["x"], expected, **EXACT)
        # later layers receive exactly the previous block's output: nothing injected in between
        for i in range(1, LAYERS):
            torch.testing.assert_close(records[i]["x"], records[i - 1]["out"], **EXACT)


def test_prefix_mode_prepends_one_z_token():
    model = make_model({"mode": "prefix"})
    tokens, z = inputs()
    records = capture(model, tokens, z)
    x0 = records[0]["x"]
    assert x0.shape == (2, tokens.shape[1] + 1, D)
    with torch.no_grad():
        p = model.conditioning.proj(z).unsqueeze(1) + model.decoder.embed.position(0, 1, z.device)
        torch.testing.assert_close(x0[:, :1], p, **EXACT)
        torch.testing.assert_close(x0[:, 1:], model.decoder.embed(tokens, start=1), **EXACT)


def test_none_mode_hidden_states_identical_for_any_z():
    model = make_model({"mode": "none"})
    tokens, z1 = inputs(1)
    r1, r2 = capture(model, tokens, z1), capture(model, tokens, -3 * z1 + 1)
    for a, b in zip(r1, r2, strict=True):
        for key in ("x", "h", "a", "f", "out"):
            assert torch.equal(a[key], b[key])
