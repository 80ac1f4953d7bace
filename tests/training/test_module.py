"""The LightningModule's loss pieces, without a Trainer: overfitting, the LR schedule, the checkpoint payload."""

import math

import pytest
import pytorch_lightning as pl
import torch

from musicvae.training.kl import kl_per_dim
from musicvae.training.module import VAEModule
from musicvae.training.optim import lr_factor


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


class RepeatBatch(torch.utils.data.Dataset):
    """The same batch, `n` times (batch_size=None in the DataLoader: items are whole batches)."""

    def __init__(self, batch, n):
        self.batch, self.n = batch, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.batch


@pytest.mark.parametrize("mode", ["in_attention", "cross_attention", "none"])
def test_overfitting_one_batch_drives_recon_down(mode):
    torch.manual_seed(0)
    module = tiny_module(mode)
    tokens, mask = fixed_batch()

    def recon():
        module.eval()
        with torch.no_grad():
            out = module.model(tokens, mask, sample=False)
            return (module.token_nll(out.logits, tokens, mask).sum() / mask[:, 1:].sum()).item()

    start = recon()
    module.train()
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=80, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    # The real training_step (loss, β, free bits) and the real optimizer (configure_optimizers).
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(RepeatBatch((tokens, mask, torch.zeros_like(tokens)), 80), batch_size=None))
    assert trainer.global_step == 80
    end = recon()
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
    tokens, mask = fixed_batch()
    plain, floored = tiny_module(free_bits=0.0), tiny_module(free_bits=0.5)
    floored.load_state_dict(plain.state_dict())
    terms = []
    for module in (plain, floored):
        torch.manual_seed(1)  # the same z draw in both
        terms.append(module.loss_terms(tokens, mask, step=0))
    a, b = terms
    assert torch.allclose(a["recon"], b["recon"]) and torch.allclose(a["kl"], b["kl"])
    # the batch-mean KL of each dim, floored at 0.5: recomputed from the model's own posterior
    mu, logvar = floored.model.encode(tokens, mask)
    per_dim = kl_per_dim(mu, logvar).mean(0)
    assert b["kl_fb"].item() == pytest.approx(per_dim.clamp(min=0.5).sum().item(), rel=1e-5)
    assert b["loss"].item() == pytest.approx((b["recon"] + 0.1 * per_dim.clamp(min=0.5).sum()).item(), rel=1e-5)
    assert a["kl_fb"].item() == pytest.approx(per_dim.sum().item(), rel=1e-5)
    # A dim under the floor gets no KL gradient: with every dim floored, KL adds no gradient at all.
    below = tiny_module(free_bits=1e6)
    below.load_state_dict(plain.state_dict())
    torch.manual_seed(1)
    loss = below.loss_terms(tokens, mask, step=0)
    head = below.model.encoder.to_posterior.weight
    (grad_loss,) = torch.autograd.grad(loss["loss"], head, retain_graph=True)
    (grad_recon,) = torch.autograd.grad(loss["recon"], head)
    assert torch.allclose(grad_loss, grad_recon)


def test_lr_factor_warmup_then_cosine_to_floor():
    assert lr_factor(0, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 110, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 10, 110, 0.1) == pytest.approx(1.0)
    assert lr_factor(60, 10, 110, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(110, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_factor(500, 10, 110, 0.1) == pytest.approx(0.1)


def test_checkpoint_payload_is_self_contained(tiny_run):
    """From the .ckpt alone: the model with its weights, the tokenizer that made its ids, the data settings."""
    from musicvae.models.checkpoint import model_from_checkpoint, read_checkpoint
    from musicvae.tokens import tokenizer_from_dict

    ckpt = read_checkpoint(tiny_run["ckpt"])
    assert ckpt["musicvae"]["format"] >= 1
    model = model_from_checkpoint(ckpt, tiny_run["ckpt"])
    hp = ckpt["hyper_parameters"]
    tokenizer = tokenizer_from_dict(hp["tokenizer"])
    assert len(tokenizer) == model.cfg.vocab_size
    assert hp["data"]["bars"] == 4 and hp["data"]["max_tokens"] == 128  # how the run cut its segments
    # The weights are the trained ones (not a fresh init): the saved tensors, bit for bit.
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, ckpt["state_dict"][f"model.{name}"]), name
    fresh = VAEModule(**hp)
    assert not torch.equal(fresh.model.encoder.to_posterior.weight, model.encoder.to_posterior.weight)


@pytest.mark.parametrize("pooling", ["summary", "mean"])
@pytest.mark.parametrize("mode", ["in_attention", "cross_attention", "embedding", "prefix", "none"])
def test_every_parameter_takes_part_in_the_training_loss(mode, pooling):
    """DDP refuses parameters that take no part in the loss (without the slower find_unused_parameters):
    none may be left out, in any conditioning or pooling, even at β = 0."""
    module = tiny_module(mode, beta=0.0)
    module.model = type(module.model)(type(module.model.cfg)(**dict(module.model.cfg.to_dict(), pooling=pooling)))
    tokens, mask = fixed_batch()
    module.loss_terms(tokens, mask, step=0)["loss"].backward()
    assert [name for name, p in module.named_parameters() if p.grad is None] == []
