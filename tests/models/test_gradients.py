"""A loss on the logits reaches the encoder through z in every mode except `none`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model_cases import CONDITIONINGS, MAX_LEN, VOCAB, WITH_Z, case_id, tiny_vae
from musicvae.models.vae import MusicVAE


def make_model(conditioning: dict, pooling: str = "summary") -> MusicVAE:
    return tiny_vae(conditioning, pooling, encoder_layers=2).train()


def recon_backward(model: MusicVAE, sample: bool):
    torch.manual_seed(1)
    tokens = torch.randint(0, VOCAB, (3, MAX_LEN))
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[2, 8:] = False
    out = model(tokens, mask, sample=sample)
    for t in (out.mu, out.logvar, out.z):
        if t.requires_grad:  # a z cut from the graph must fail the assertions below, not retain_grad
            t.retain_grad()
    loss = F.cross_entropy(out.logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))
    loss.backward()
    return out


def encoder_grad_norm(model: MusicVAE) -> float:
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    return float(sum(g.abs().sum() for g in grads)) if grads else 0.0


@pytest.mark.parametrize("pooling", ["summary", "mean"])
@pytest.mark.parametrize("conditioning", CONDITIONINGS, ids=case_id)
def test_recon_loss_reaches_encoder(conditioning, pooling):
    model = make_model(conditioning, pooling).train()
    out = recon_backward(model, sample=True)
    if conditioning["mode"] == "none":
        assert out.z.grad is None or torch.count_nonzero(out.z.grad) == 0
        assert encoder_grad_norm(model) == 0.0
        return
    # every row of z, mu and logvar gets a gradient (sampling path: logvar through the noise scale)
    for t in (out.z, out.mu, out.logvar):
        assert t.grad is not None and (t.grad.abs().sum(-1) > 0).all()
    assert model.encoder.to_posterior.weight.grad.abs().sum() > 0
    assert model.encoder.blocks[0].attn.q.weight.grad.abs().sum() > 0  # deep into the encoder


@pytest.mark.parametrize("conditioning", WITH_Z, ids=case_id)
def test_eval_path_z_is_mu_and_differentiable(conditioning):
    model = make_model(conditioning).eval()
    out = recon_backward(model, sample=False)
    assert torch.equal(out.z, out.mu)
    assert out.mu.grad is not None and (out.mu.grad.abs().sum(-1) > 0).all()
    assert encoder_grad_norm(model) > 0


@pytest.mark.parametrize("conditioning", WITH_Z, ids=case_id)
def test_every_conditioning_parameter_gets_gradient(conditioning):
    """All of z's projections are used (with per_layer: every layer's own Linear)."""
    model = make_model(conditioning).train()
    recon_backward(model, sample=True)
    params = dict(model.conditioning.named_parameters())
    assert params
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
