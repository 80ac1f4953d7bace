"""One latent per bar (`model.latent=bar`): the encoder encodes each bar on its own, every conditioning
gives bar k's z to bar k's positions, and cached decoding equals the full pass across bar lines."""

from __future__ import annotations

import pytest
import torch

from model_cases import BAR_CONDITIONINGS, BAR_ID, MAX_LEN, VOCAB, C, case_id, tiny_vae
from musicvae.data.loading import bar_index
from musicvae.models.vae import MusicVAE

BOS, EOS, PAD = 1, 2, 0


def segment(*bars: list[int]) -> list[int]:
    """BOS, then each bar as Bar + its tokens, then EOS."""
    out = [BOS]
    for bar in bars:
        out += [BAR_ID] + bar
    return out + [EOS]


def batch(*rows: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    t = max(len(r) for r in rows)
    tokens = torch.tensor([r + [PAD] * (t - len(r)) for r in rows])
    mask = torch.tensor([[True] * len(r) + [False] * (t - len(r)) for r in rows])
    return tokens, mask, bar_index(tokens, [BAR_ID])


def bar_model(conditioning: dict, **kw) -> MusicVAE:
    return tiny_vae(conditioning, latent="bar", **kw)


def test_bar_index_counts_bar_tokens():
    tokens, _, bars = batch(segment([5, 6], [7]))
    assert tokens[0].tolist() == [BOS, BAR_ID, 5, 6, BAR_ID, 7, EOS]
    assert bars[0].tolist() == [0, 0, 0, 0, 1, 1, 1]  # BOS in bar 0, a Bar token in the bar it opens


@pytest.mark.parametrize("pooling", ["summary", "mean"])
def test_encoder_gives_one_posterior_per_bar_from_that_bar_alone(pooling):
    model = bar_model({"mode": "in_attention"}, pooling=pooling)
    x, y, w = [5, 6, 7], [8, 9], [10, 11, 12]
    tokens, mask, bars = batch(segment(x, y, w), segment(x, [13, 14], w), segment(y, x))
    with torch.no_grad():
        mu, logvar = model.encode(tokens, mask, bars)
    assert mu.shape == logvar.shape == (3, 3, C)
    torch.testing.assert_close(mu[0, 0], mu[1, 0])  # bar 0 alike: changing bar 1 leaves it
    torch.testing.assert_close(mu[0, 2], mu[1, 2])  # ... and bar 2 (no attention across bars)
    assert not torch.allclose(mu[0, 1], mu[1, 1])
    torch.testing.assert_close(mu[0, 0], mu[2, 1], atol=1e-5, rtol=0)  # bar x: the same z wherever it stands
    torch.testing.assert_close(mu[0, 1], mu[2, 0], atol=1e-5, rtol=0)


def test_missing_bars_are_the_prior_and_masked():
    model = bar_model({"mode": "in_attention"})
    tokens, mask, bars = batch(segment([5], [6], [7]), segment([5]))
    out = model(tokens, mask, sample=False, bars=bars)
    assert out.latent_mask.tolist() == [[True, True, True], [True, False, False]]
    assert (out.mu[1, 1:] == 0).all() and (out.logvar[1, 1:] == 0).all()  # KL 0: no cost, no gradient
    torch.testing.assert_close(out.mu[1, 0], out.mu[0, 0])


def random_bar_tokens(generator: torch.Generator, b: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, MAX_LEN) tokens from BOS with Bar tokens at random places (rows differ): and their bars."""
    tokens = torch.randint(5, VOCAB, (b, MAX_LEN), generator=generator)
    tokens[:, 0] = BOS
    tokens[:, 1] = BAR_ID
    extra = torch.rand(b, MAX_LEN, generator=generator) < 0.3
    extra[:, :2] = False
    tokens[extra] = BAR_ID
    return tokens, bar_index(tokens, [BAR_ID])


CHUNKINGS = {"all-ones": [1] * MAX_LEN, "uneven": [3, 1, 2, 1, 4, 1], "one-pass-then-ones": [7] + [1] * 5}


@pytest.mark.parametrize("chunking", CHUNKINGS, ids=list(CHUNKINGS))
@pytest.mark.parametrize("conditioning", BAR_CONDITIONINGS, ids=case_id)
def test_cache_matches_full_pass_with_bar_latents(conditioning, chunking):
    """Token for token and logit for logit, with steps that cross bar lines (each step passes its bars)."""
    model = tiny_vae(conditioning, latent="bar", dropout=0.1)  # eval: dropout configured, not applied
    gen = torch.Generator().manual_seed(1)
    tokens, bars = random_bar_tokens(gen)
    k = int(bars.max()) + 1
    assert k >= 3 and (bars[:, 1:] != bars[:, :-1]).any()
    z = torch.randn(3, k, C, generator=gen)
    with torch.no_grad():
        full = model.decode(tokens, z, bars=bars)
        cache, out, start = model.decoder.new_cache(), [], 0
        for n in CHUNKINGS[chunking]:
            out.append(
                model.decode(tokens[:, start : start + n], z, cache=cache, bars=bars[:, start : start + n])
            )
            start += n
    torch.testing.assert_close(torch.cat(out, 1), full, rtol=0, atol=1e-5)
    assert torch.equal(torch.cat(out, 1).argmax(-1), full.argmax(-1))


LOCAL = [c for c in BAR_CONDITIONINGS if c["mode"] not in ("none", "prefix") and c.get("bar_view") != "all"]


@pytest.mark.parametrize("conditioning", LOCAL, ids=case_id)
def test_bar_k_latent_conditions_bar_k_positions(conditioning):
    """Changing bar 1's z changes the predictions from bar 1's first position on, and none before it."""
    model = bar_model(conditioning)
    tokens, _, bars = batch(segment([5, 6, 7], [8, 9], [10, 11]))
    z = torch.randn(1, 3, C)
    z2 = z.clone()
    z2[:, 1] = torch.randn(C)
    with torch.no_grad():
        a, b = model.decode(tokens, z, bars=bars), model.decode(tokens, z2, bars=bars)
    first = int((bars[0] == 1).nonzero()[0])
    torch.testing.assert_close(a[:, :first], b[:, :first], rtol=0, atol=0)
    assert (a[:, first] - b[:, first]).abs().max() > 1e-4


@pytest.mark.parametrize("conditioning", [c for c in BAR_CONDITIONINGS if c["mode"] != "prefix"], ids=case_id)
def test_equal_bar_latents_decode_as_one_segment_latent(conditioning):
    """K copies of z per bar = z for the segment: per-position conditions are the broadcast one, gathered."""
    model = bar_model(conditioning)
    tokens, _, bars = batch(segment([5, 6], [7, 8], [9]))
    z = torch.randn(1, C)
    with torch.no_grad():
        per_bar = model.decode(tokens, z[:, None].expand(1, 3, C), bars=bars)
        per_segment = model.decode(tokens, z)
    torch.testing.assert_close(per_bar, per_segment, rtol=0, atol=1e-5)


def test_prefix_takes_one_token_per_bar_and_refuses_more_than_max_bars():
    model = bar_model({"mode": "prefix"})  # max_bars=6
    tokens, _, bars = batch(segment([5], [6], [7]))
    cache = model.decoder.new_cache()
    with torch.no_grad():
        model.decode(tokens[:, :2], torch.randn(1, 3, C), cache=cache, bars=bars[:, :2])
        assert cache.length == 3 + 2  # three bar tokens prepended
        with pytest.raises(ValueError, match="max_bars"):
            model.decode(tokens, torch.randn(1, 7, C), bars=bars)


def test_training_step_shapes_and_gradient_reach_every_bar():
    model = bar_model({"mode": "in_attention"}).train()
    tokens, mask, bars = batch(segment([5, 6], [7], [8, 9]), segment([10], [11, 12], [13]))
    out = model(tokens, mask, sample=True, bars=bars)
    assert out.logits.shape == (2, tokens.shape[1] - 1, VOCAB) and out.z.shape == (2, 3, C)
    grads = torch.autograd.grad(out.logits.logsumexp(-1).sum(), out.z)[0]  # (B, K, c)
    assert (grads.abs().sum(-1) > 0).all()  # every bar's z reaches the decoder


def test_padding_rows_far_longer_than_a_bar_encode():
    """PAD after a short row's last bar gets no position past the table (positions restart per bar)."""
    model = bar_model({"mode": "in_attention"})  # max_len 12: a bar's positions must stay below 13
    long_row = segment([5, 6, 7, 8, 9], [10, 11, 12, 13], [14, 15, 16, 17])  # 18 tokens, bars of 5 or 6
    short_row = segment([5])
    tokens, mask, bars = batch(long_row, short_row)
    with torch.no_grad():
        mu, _ = model.encode(tokens, mask, bars)
        alone, _ = model.encode(*batch(short_row)[:2], batch(short_row)[2])
    torch.testing.assert_close(mu[1, 0], alone[0, 0], atol=1e-5, rtol=0)  # padding changes nothing


def test_sixteen_bar_segments_of_up_to_1280_tokens_train_per_bar(make_piece, compose_cfg, tmp_path):
    """data.bars=16, data.max_tokens=1280: batches of 16-bar segments, one latent per bar, a loss that backprops."""
    from musicvae.data import MidiDataModule
    from musicvae.models.vae import VAEConfig

    for i in range(4):
        make_piece(tmp_path / "midi" / f"long{i}.mid", bars=20, seed=i)
    cfg = compose_cfg("prepare_data", ["data=midi_dir", f"data.path={tmp_path / 'midi'}", f"paths.data_dir={tmp_path / 'data'}",
                                       "data.workers=1", "data.bars=16", "data.hop_bars=2", "data.max_tokens=1280",
                                       "data.batch_size=2", "data.val_fraction=0.0", "data.test_fraction=0.0"])  # fmt: skip
    dm = MidiDataModule(cfg.data, cfg.tokenizer)
    dm.prepare_data()
    dm.setup("fit")
    tokens, mask, bars = next(iter(dm.train_dataloader()))
    assert dm.max_len == 1282 and tokens.shape[1] > 400  # ~30 tokens a bar
    assert int(bars[mask].max()) == 15  # 16 bars: 0..15
    model = MusicVAE(VAEConfig(vocab_size=dm.vocab_size, max_len=dm.max_len, d_model=32, heads=2, encoder_layers=1,
                               decoder_layers=1, latent_dim=8, latent="bar", max_bars=16))  # fmt: skip
    out = model(tokens, mask, sample=True, bars=bars)
    assert out.mu.shape == (2, 16, 8) and out.latent_mask.all()
    out.logits.logsumexp(-1).mean().backward()
    assert model.encoder.to_posterior.weight.grad is not None
