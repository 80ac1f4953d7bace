"""`position=every_sublayer` is x-transformers' in-attention (`in_attn_cond`), exactly.

Our decoder (in_attention, every_sublayer, `model.bias=false`) and x-transformers' TransformerWrapper(Decoder)
with matching options get the same weights, and the same condition: x-transformers uses `in_attn_cond` as
given, so it gets our projection's output w = W z, (B, D) for a segment latent or, per bar, (B, T, D) with
each position's bar's row. Logits agree to 1e-5, teacher-forced and with each side's KV cache.

Copying the weights: their LayerNorms store gamma - 1 (`norm_add_unit_offset`), their positions are scaled by
D ** -0.5 at use, their attention has separate k and v projections where ours has one `kv`.

The one difference, per bar with a cache: x-transformers' cached step cuts its input to the new position
(`x = x[:, -cache_age:]`) but not a per-position `in_attn_cond`. Given the condition of every position so
far, as its full forward takes it, the new position's x broadcasts over all T condition rows, and T keys and
values of it enter the cache. Given the new position's row only (what our `select` does with the new
positions' bars), it matches; `test_per_bar_cached_needs_the_condition_cut` shows both.

x-transformers is a test/benchmark extra (`pip install -e ".[bench]"`), never a runtime dependency.
"""

from __future__ import annotations

import math

import pytest
import torch

from musicvae.data.loading import bar_index
from musicvae.models.conditioning import at_bars
from musicvae.models.vae import MusicVAE, VAEConfig

xt = pytest.importorskip(
    "x_transformers", reason='x-transformers is not installed (a test/benchmark extra: pip install -e ".[bench]")'
)

VOCAB, MAX_LEN, D, HEADS, C, LAYERS, FF_MULT = 40, 12, 32, 4, 8, 2, 2
BOS, BAR_ID = 1, 4
TOL = dict(rtol=0, atol=1e-5)


def our_model(latent: str = "segment", position: str = "every_sublayer") -> MusicVAE:
    torch.manual_seed(0)
    cfg = VAEConfig(
        vocab_size=VOCAB, max_len=MAX_LEN, d_model=D, heads=HEADS, encoder_layers=1, decoder_layers=LAYERS,
        latent_dim=C, ff_mult=FF_MULT, dropout=0.0, bias=False, latent=latent, max_bars=6,
        conditioning={"mode": "in_attention", "position": position},
    )  # fmt: skip
    model = MusicVAE(cfg).eval()
    with torch.no_grad():  # LayerNorm weights away from 1, so that copying them is checked too
        for name, p in model.decoder.named_parameters():
            if name.endswith(("ln_attn.weight", "ln_ff.weight", "ln_out.weight")):
                p.uniform_(0.5, 1.5)
    return model


def their_decoder(ours: MusicVAE, flash: bool = False) -> torch.nn.Module:
    """x-transformers' decoder with our decoder's options and weights."""
    layers = xt.Decoder(
        dim=D, depth=LAYERS, heads=HEADS, attn_dim_head=D // HEADS, ff_mult=FF_MULT, ff_no_bias=True, attn_flash=flash
    )
    theirs = xt.TransformerWrapper(
        num_tokens=VOCAB, max_seq_len=MAX_LEN, attn_layers=layers, emb_dropout=0.0,
        tie_embedding=True, tie_embedding_scale=1.0,  # ours: the head is the token table, unscaled
    )  # fmt: skip
    dec = ours.decoder
    weights = {
        "token_emb.emb.weight": dec.embed.tok.weight,
        "pos_emb.emb.weight": dec.embed.pos.weight * math.sqrt(D),  # theirs is scaled by D ** -0.5 at use
        "attn_layers.final_norm.gamma": dec.ln_out.weight - 1,  # theirs stores gamma - 1
    }
    for i, block in enumerate(dec.blocks):  # their layers alternate: 2i self-attention, 2i + 1 feed-forward
        a, f = f"attn_layers.layers.{2 * i}", f"attn_layers.layers.{2 * i + 1}"
        k, v = block.attn.kv.weight.chunk(2, dim=0)
        weights |= {
            f"{a}.0.0.gamma": block.ln_attn.weight - 1,
            f"{a}.1.to_q.weight": block.attn.q.weight,
            f"{a}.1.to_k.weight": k,
            f"{a}.1.to_v.weight": v,
            f"{a}.1.to_out.weight": block.attn.out.weight,
            f"{f}.0.0.gamma": block.ln_ff.weight - 1,
            f"{f}.1.ff.0.0.weight": block.ff.net[0].weight,
            f"{f}.1.ff.2.weight": block.ff.net[2].weight,
        }
    theirs.load_state_dict({k: w.detach().clone() for k, w in weights.items()}, strict=True)
    return theirs.eval()


def segment_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(5, VOCAB, (3, MAX_LEN), generator=g)
    tokens[:, 0] = BOS
    return tokens, torch.randn(3, C, generator=g)


def bar_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """tokens with Bar tokens where each row has its own bar lines, their bars (B, T), one z per bar (B, K, c)."""
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(5, VOCAB, (3, MAX_LEN), generator=g)
    tokens[:, 0] = BOS
    for row, opens in enumerate([(1, 4, 8), (1, 3, 6, 10), (1, 7)]):
        tokens[row, list(opens)] = BAR_ID
    bars = bar_index(tokens, [BAR_ID])  # (B, T): BOS in bar 0, a Bar token in the bar it opens
    return tokens, bars, torch.randn(3, int(bars.max()) + 1, C, generator=g)


def condition(model: MusicVAE, z: torch.Tensor, bars: torch.Tensor | None = None) -> torch.Tensor:
    """What x-transformers gets as in_attn_cond: our w = W z, (B, D), or per bar each position's row (B, T, D)."""
    w = model.conditioning.proj[0](z)
    return w if bars is None else at_bars(w, bars)


def our_cached(model, tokens, z, bars=None) -> torch.Tensor:
    """Our KV-cached decode, one position a step -> (B, T, V)."""
    cache, steps = model.decoder.new_cache(), []
    for t in range(tokens.shape[1]):
        step_bars = None if bars is None else bars[:, t : t + 1]
        steps.append(model.decode(tokens[:, t : t + 1], z, cache=cache, bars=step_bars))
    return torch.cat(steps, dim=1)


def their_cached(theirs, tokens, cond_at) -> tuple[torch.Tensor, object]:
    """x-transformers' KV-cached decode (as its generate calls it: the whole prefix, the cache cuts it) -> (B, T, V)
    and its cache; cond_at(t): the in_attn_cond of step t."""
    cache, steps = None, []
    for t in range(tokens.shape[1]):
        logits, cache = theirs(tokens[:, : t + 1], in_attn_cond=cond_at(t), cache=cache, return_intermediates=True)
        steps.append(logits[:, -1:])
    return torch.cat(steps, dim=1), cache


def cached_positions(cache) -> int:
    """Positions in x-transformers' first layer's key cache (B, H, S, Dh)."""
    return cache.attn_intermediates[0].cached_kv[0].shape[2]


@pytest.mark.parametrize("flash", [False, True], ids=["einsum", "flash"])
def test_segment_latent_teacher_forced(flash):
    model = our_model()
    theirs = their_decoder(model, flash)
    tokens, z = segment_inputs()
    with torch.no_grad():
        ours, expected = model.decode(tokens, z), theirs(tokens, in_attn_cond=condition(model, z))
    assert ours.shape == expected.shape == (3, MAX_LEN, VOCAB)
    torch.testing.assert_close(ours, expected, **TOL)


@pytest.mark.parametrize("flash", [False, True], ids=["einsum", "flash"])
def test_bar_latents_teacher_forced(flash):
    model = our_model("bar")
    theirs = their_decoder(model, flash)
    tokens, bars, z = bar_inputs()
    with torch.no_grad():
        ours, expected = model.decode(tokens, z, bars=bars), theirs(tokens, in_attn_cond=condition(model, z, bars))
    torch.testing.assert_close(ours, expected, **TOL)


def test_segment_latent_cached():
    model = our_model()
    theirs = their_decoder(model)
    tokens, z = segment_inputs()
    with torch.no_grad():
        w = condition(model, z)  # (B, D): the same at every step
        expected, _ = their_cached(theirs, tokens, lambda t: w)
        ours = our_cached(model, tokens, z)
        full = model.decode(tokens, z)
    torch.testing.assert_close(ours, expected, **TOL)
    torch.testing.assert_close(expected, full, **TOL)


def test_per_bar_cached_needs_the_condition_cut():
    """Per bar, with the cache: x-transformers matches once its condition is cut to the new position (the one
    difference); given every position's condition so far, its cache takes T copies of the new position."""
    model = our_model("bar")
    theirs = their_decoder(model)
    tokens, bars, z = bar_inputs()
    with torch.no_grad():
        w = condition(model, z, bars)  # (B, T, D)
        ours = our_cached(model, tokens, z, bars)
        cut, cut_cache = their_cached(theirs, tokens, lambda t: w[:, t : t + 1])
        uncut, uncut_cache = their_cached(theirs, tokens, lambda t: w[:, : t + 1])
        full = model.decode(tokens, z, bars=bars)
    torch.testing.assert_close(ours, full, **TOL)
    torch.testing.assert_close(ours, cut, **TOL)  # the new position's row: equal
    assert cached_positions(cut_cache) == MAX_LEN
    assert cached_positions(uncut_cache) == MAX_LEN * (MAX_LEN + 1) // 2  # step t cached t + 1 rows of the new position
    torch.testing.assert_close(uncut[:, 0], cut[:, 0], **TOL)  # step 0: one row either way
    assert (uncut[:, 1:] - cut[:, 1:]).abs().amax() > 1e-3  # from step 1 on, the extra keys change attention


@pytest.mark.parametrize("position", ["pre_norm_attn", "post_norm", "residual"])
def test_other_positions_are_not_x_transformers(position):
    """The check can fail: the same weights at any other position give other logits (pre_norm_attn, once
    called `pre_norm`, adds z before the self-attention norm only)."""
    model = our_model(position=position)
    theirs = their_decoder(model)
    tokens, z = segment_inputs()
    with torch.no_grad():
        diff = (model.decode(tokens, z) - theirs(tokens, in_attn_cond=condition(model, z))).abs().amax()
    assert diff > 1e-3
