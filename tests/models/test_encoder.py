"""The encoder is bidirectional and ignores padding, for both poolings."""

from __future__ import annotations

import pytest
import torch

from musicvae.models.vae import MusicVAE, VAEConfig

VOCAB, MAX_LEN, C = 40, 12, 8



POOLINGS = ["summary", "mean"]


def make_model(pooling: str) -> MusicVAE:
    torch.manual_seed(0)
    cfg = VAEConfig(
        vocab_size=VOCAB, max_len=MAX_LEN, d_model=32, heads=4, encoder_layers=2, decoder_layers=1,
        latent_dim=C, ff_mult=2, dropout=0.1, pooling=pooling, conditioning={"mode": "in_attention"},
    )  # fmt: skip
    return MusicVAE(cfg).eval()


def padded_batch(lengths=(12, 7, 4)):
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, VOCAB, (len(lengths), MAX_LEN), generator=g)
    mask = torch.arange(MAX_LEN)[None] < torch.tensor(lengths)[:, None]  # (B, T) bool
    return tokens, mask, list(lengths)


def change(tokens: torch.Tensor, rows, cols) -> torch.Tensor:
    out = tokens.clone()
    out[rows, cols] = (out[rows, cols] + 1 + torch.randint(0, VOCAB - 1, out[rows, cols].shape)) % VOCAB
    return out


@pytest.mark.parametrize("pooling", POOLINGS)
def test_last_real_token_changes_mu(pooling):
    model = make_model(pooling)
    tokens, mask, lengths = padded_batch()
    rows = torch.arange(len(lengths))
    last = torch.tensor(lengths) - 1
    with torch.no_grad():
        mu, logvar = model.encode(tokens, mask)
        mu2, logvar2 = model.encode(change(tokens, rows, last), mask)
    assert (mu - mu2).abs().amax(-1).min() > 1e-4
    assert (logvar - logvar2).abs().amax(-1).min() > 1e-4


@pytest.mark.parametrize("pooling", POOLINGS)
def test_first_position_sees_last_token(pooling):
    """Bidirectional: the first layer's output at the first real token depends on the last real token.
    (The first layer's: with summary pooling, the last layer computes the summary position only.)"""
    model = make_model(pooling)
    tokens, mask, lengths = padded_batch()
    seen = []
    handle = model.encoder.blocks[0].register_forward_hook(lambda m, a, out: seen.append(out.detach().clone()))
    rows = torch.arange(len(lengths))
    with torch.no_grad():
        model.encode(tokens, mask)
        model.encode(change(tokens, rows, torch.tensor(lengths) - 1), mask)
    handle.remove()
    first = 1 if pooling == "summary" else 0  # the summary token sits at position 0
    diff = (seen[0][:, first] - seen[1][:, first]).abs().amax(-1)
    assert diff.min() > 1e-4


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pad_tokens_do_not_change_posterior(pooling):
    model = make_model(pooling)
    tokens, mask, _ = padded_batch()
    noisy = tokens.clone()
    noisy[~mask] = (tokens[~mask] + 1) % VOCAB  # every pad id differs
    with torch.no_grad():
        mu, logvar = model.encode(tokens, mask)
        mu2, logvar2 = model.encode(noisy, mask)
    torch.testing.assert_close(mu2, mu, rtol=0, atol=1e-6)
    torch.testing.assert_close(logvar2, logvar, rtol=0, atol=1e-6)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_padded_equals_unpadded(pooling):
    """A padded sequence gets the same posterior as the same sequence alone, without padding."""
    model = make_model(pooling)
    tokens, mask, lengths = padded_batch()
    with torch.no_grad():
        mu, logvar = model.encode(tokens, mask)
        for i, n in enumerate(lengths):
            alone = tokens[i : i + 1, :n]
            mu_i, logvar_i = model.encode(alone, torch.ones_like(alone, dtype=torch.bool))
            torch.testing.assert_close(mu_i[0], mu[i], rtol=0, atol=1e-5)
            torch.testing.assert_close(logvar_i[0], logvar[i], rtol=0, atol=1e-5)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_mask_is_used(pooling):
    """Masking out a real token changes the posterior (the mask is not ignored)."""
    model = make_model(pooling)
    tokens, mask, lengths = padded_batch()
    shorter = mask.clone()
    shorter[0, lengths[0] - 1] = False
    with torch.no_grad():
        mu, _ = model.encode(tokens, mask)
        mu2, _ = model.encode(tokens, shorter)
    assert (mu[0] - mu2[0]).abs().max() > 1e-4
    torch.testing.assert_close(mu2[1:], mu[1:], rtol=0, atol=1e-6)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_batch_rows_independent(pooling):
    model = make_model(pooling)
    tokens, mask, lengths = padded_batch()
    with torch.no_grad():
        mu, _ = model.encode(tokens, mask)
        mu2, _ = model.encode(change(tokens, [1], [0]), mask)
    torch.testing.assert_close(mu2[[0, 2]], mu[[0, 2]], rtol=0, atol=1e-6)
    assert (mu2[1] - mu[1]).abs().max() > 1e-4
