"""The LightningModule's loss pieces, without a Trainer: overfitting, the LR schedule, the checkpoint payload."""

import math

import pytest
import torch

from musicvae.training.kl import free_bits_kl, kl_per_dim
from musicvae.training.module import VAEModule, lr_factor


def tiny_module(mode="in_attention", **kl):
    model = dict(
        vocab_size=24, max_len=16, d_model=32, heads=4, encoder_layers=1, decoder_layers=2, latent_dim=8,
        dropout=0.0, conditioning={"mode": mode},
    )  # fmt: skip
    optim = dict(lr=3e-3, weight_decay=0.0, betas=[0.9, 0.98], warmup_steps=0, min_lr_ratio=1.0)
    return VAEModule(model=model, kl=dict({"schedule": "constant", "beta": 0.1}, **kl), optim=optim)


def fixed_batch(b=4, t=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, 24, (b, t), generator=g)
    tokens[:, 0] = 1  # BOS
    tokens[:, -1] = 2  # EOS
    return tokens, torch.ones_like(tokens, dtype=torch.bool)


@pytest.mark.parametrize("mode", ["in_attention", "cross_attention", "none"])
def test_overfitting_one_batch_drives_recon_down(mode):
    torch.manual_seed(0)
    module = tiny_module(mode)
    tokens, mask = fixed_batch()
    opt = torch.optim.AdamW(module.parameters(), lr=3e-3)

    def recon():
        out = module.model(tokens, mask, sample=False)
        return module.token_nll(out.logits, tokens, mask).sum() / mask[:, 1:].sum()

    start = recon().item()
    for _ in range(80):
        out = module.model(tokens, mask, sample=True)
        loss = module.token_nll(out.logits, tokens, mask).sum() / 4 + 0.1 * kl_per_dim(out.mu, out.logvar).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = recon().item()
    assert start > 2.5  # ~log(24) at init
    assert end < 0.5 * start


def test_token_nll_ignores_padding():
    logits = torch.randn(2, 5, 10)
    tokens = torch.randint(0, 10, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 3:] = False
    nll = VAEModule.token_nll(logits, tokens, mask)
    assert nll.shape == (2, 5)
    assert torch.all(nll[1, 2:] == 0) and torch.all(nll[0] > 0)
    changed = tokens.clone()
    changed[1, 4:] = (changed[1, 4:] + 1) % 10  # only padded targets change
    assert torch.equal(VAEModule.token_nll(logits, changed, mask), nll)


def test_free_bits_in_training_loss_floors_each_dim():
    mu = torch.zeros(3, 4)
    logvar = torch.zeros(3, 4)  # KL exactly 0 in every dim
    assert free_bits_kl(kl_per_dim(mu, logvar), 0.25).item() == pytest.approx(1.0)


def test_lr_factor_warmup_then_cosine_to_floor():
    assert lr_factor(0, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 110, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 10, 110, 0.1) == pytest.approx(1.0)
    assert lr_factor(60, 10, 110, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(110, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_factor(500, 10, 110, 0.1) == pytest.approx(0.1)


def test_checkpoint_payload_is_self_contained():
    module = tiny_module()
    ckpt = {}
    module.on_save_checkpoint(ckpt)
    assert ckpt["musicvae"]["format"] >= 1
    assert module.hparams.model["conditioning"] == {"mode": "in_attention"}
    assert module.hparams.model["vocab_size"] == 24
