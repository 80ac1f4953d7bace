"""Output shapes of the VAE for every conditioning mode, pooling and in-attention position."""

from __future__ import annotations

import pytest
import torch

from model_cases import CONDITIONINGS, MAX_LEN, VOCAB, C, D, case_id, tiny_vae
from musicvae.models.vae import MusicVAE


def make_model(conditioning: dict, pooling: str = "summary", latent_dim: int = C, layers: int = 2) -> MusicVAE:
    return tiny_vae(conditioning, pooling, latent_dim, encoder_layers=layers, decoder_layers=layers)


def batch(b: int = 3, t: int = MAX_LEN) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, VOCAB, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, t - 4 :] = False  # one shorter, padded sequence
    return tokens, mask


@pytest.mark.parametrize("pooling", ["summary", "mean"])
@pytest.mark.parametrize("conditioning", CONDITIONINGS, ids=case_id)
def test_forward_shapes(conditioning, pooling):
    model = make_model(conditioning, pooling)
    tokens, mask = batch()
    out = model(tokens, mask)
    b, t = tokens.shape
    assert out.logits.shape == (b, t - 1, VOCAB)
    assert out.mu.shape == (b, C)
    assert out.logvar.shape == (b, C)
    assert out.z.shape == (b, C)
    assert (
        torch.isfinite(out.logits).all() and torch.isfinite(out.mu).all() and torch.isfinite(out.logvar).all()
    )
    # eval: z is the posterior mean
    assert torch.equal(out.z, out.mu)


@pytest.mark.parametrize("conditioning", CONDITIONINGS, ids=case_id)
def test_train_mode_samples_z(conditioning):
    model = make_model(conditioning).train()
    tokens, mask = batch()
    torch.manual_seed(3)
    out = model(tokens, mask)
    assert out.z.shape == (3, C)
    assert not torch.equal(out.z, out.mu)  # reparameterized sample, not the mean


@pytest.mark.parametrize("conditioning", CONDITIONINGS, ids=case_id)
@pytest.mark.parametrize("latent_dim", [8, 32, 48])
def test_latent_dim_independent_of_d_model(conditioning, latent_dim):
    model = make_model(conditioning, latent_dim=latent_dim)
    tokens, _ = batch()
    z = torch.randn(3, latent_dim)
    logits = model.decode(tokens[:, :5], z)
    assert logits.shape == (3, 5, VOCAB)
    mu, logvar = model.encode(*batch())
    assert mu.shape == logvar.shape == (3, latent_dim)


@pytest.mark.parametrize("conditioning", CONDITIONINGS, ids=case_id)
def test_decode_full_max_len(conditioning):
    """The decoder accepts max_len tokens (prefix mode's extra position included)."""
    model = make_model(conditioning)
    tokens, _ = batch(t=MAX_LEN)
    assert model.decode(tokens, torch.randn(3, C)).shape == (3, MAX_LEN, VOCAB)


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("per_layer", [False, True])
def test_in_attention_projection_count(per_layer, layers):
    model = make_model({"mode": "in_attention", "per_layer": per_layer}, layers=layers)
    proj = model.conditioning.proj
    assert len(proj) == (layers if per_layer else 1)
    for p in proj:
        assert p.in_features == C and p.out_features == D
        assert p.bias is None  # bias defaults to off
    if per_layer and layers > 1:
        assert proj[0].weight.data_ptr() != proj[1].weight.data_ptr()


def test_in_attention_bias_option():
    model = make_model({"mode": "in_attention", "bias": True, "per_layer": True})
    assert all(p.bias is not None and p.bias.shape == (D,) for p in model.conditioning.proj)


def test_cross_attention_memory_tokens():
    model = make_model({"mode": "cross_attention", "n_memory": 3})
    state = model.conditioning.prepare(torch.randn(2, 1, C))  # one latent per sequence
    memory, memory_mask = model.conditioning.memory(state, model.conditioning.select(state, None))
    assert memory.shape == (2, 3, D) and memory_mask is None
    assert all(block.cross is not None for block in model.decoder.blocks)


@pytest.mark.parametrize("mode", ["none", "embedding", "prefix", "in_attention"])
def test_no_cross_attention_without_memory(mode):
    model = make_model({"mode": mode})
    assert all(block.cross is None for block in model.decoder.blocks)
