"""A loss on the logits reaches the encoder through z in every mode except `none`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from musicvae.models.vae import MusicVAE, VAEConfig

VOCAB, MAX_LEN, C = 40, 12, 8



CONDITIONINGS = [
    {"mode": "none"},
    {"mode": "embedding"},
    {"mode": "prefix"},
    {"mode": "in_attention", "position": "post_norm"},
    {"mode": "in_attention", "position": "pre_norm"},
    {"mode": "in_attention", "position": "residual"},
    {"mode": "in_attention", "position": "residual", "per_layer": True, "bias": True},
    {"mode": "cross_attention", "n_memory": 3},
]


def _id(cond: dict) -> str:
    return "-".join(str(v) for v in cond.values())


def make_model(conditioning: dict, pooling: str = "summary") -> MusicVAE:
    torch.manual_seed(0)
    cfg = VAEConfig(
        vocab_size=VOCAB, max_len=MAX_LEN, d_model=32, heads=4, encoder_layers=2, decoder_layers=2,
        latent_dim=C, ff_mult=2, dropout=0.0, pooling=pooling, conditioning=dict(conditioning),
    )  # fmt: skip
    return MusicVAE(cfg)


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
@pytest.mark.parametrize("conditioning", CONDITIONINGS, ids=_id)
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


@pytest.mark.parametrize("conditioning", [c for c in CONDITIONINGS if c["mode"] != "none"], ids=_id)
def test_eval_path_z_is_mu_and_differentiable(conditioning):
    model = make_model(conditioning).eval()
    out = recon_backward(model, sample=False)
    assert torch.equal(out.z, out.mu)
    assert out.mu.grad is not None and (out.mu.grad.abs().sum(-1) > 0).all()
    assert encoder_grad_norm(model) > 0


@pytest.mark.parametrize("conditioning", [c for c in CONDITIONINGS if c["mode"] != "none"], ids=_id)
def test_every_conditioning_parameter_gets_gradient(conditioning):
    """All of z's projections are used (with per_layer: every layer's own Linear)."""
    model = make_model(conditioning).train()
    recon_backward(model, sample=True)
    params = dict(model.conditioning.named_parameters())
    assert params
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
