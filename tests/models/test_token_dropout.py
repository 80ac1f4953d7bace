"""Decoder input token dropout (Bowman et al. 2016): training replaces inputs with MASK, eval never does."""

from __future__ import annotations

import torch

from model_cases import MAX_LEN, VOCAB, tiny_vae
from musicvae.models.vae import MASK_ID, drop_tokens


def test_drop_tokens_keeps_bos_and_padding_and_drops_about_p():
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(4, VOCAB, (64, 50), generator=g)
    mask = torch.ones_like(inputs, dtype=torch.bool)
    mask[:, 40:] = False
    inputs[:, 40:] = 0  # padding
    torch.manual_seed(0)
    out = drop_tokens(inputs, mask, 0.3)
    assert torch.equal(out[:, 0], inputs[:, 0])  # BOS position untouched
    assert torch.equal(out[:, 40:], inputs[:, 40:])  # padding untouched
    dropped = out[:, 1:40] == MASK_ID
    assert torch.equal(out[:, 1:40][~dropped], inputs[:, 1:40][~dropped])  # the rest kept as they were
    assert 0.25 < dropped.float().mean().item() < 0.35


def test_token_dropout_changes_training_logits_only():
    model = tiny_vae({"mode": "in_attention"})
    model.cfg.token_dropout = 0.5
    tokens = torch.randint(4, VOCAB, (4, MAX_LEN), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(tokens, dtype=torch.bool)
    model.eval()
    a, b = model(tokens, mask).logits, model(tokens, mask).logits
    assert torch.equal(a, b)  # eval: no dropout, deterministic
    model.cfg.token_dropout = 0.0
    assert torch.equal(model(tokens, mask).logits, a)  # and the same as a model without it
    model.cfg.token_dropout = 0.5
    model.train()
    torch.manual_seed(0)
    dropped = model(tokens, mask, sample=False).logits
    model.cfg.token_dropout = 0.0
    torch.manual_seed(0)
    kept = model(tokens, mask, sample=False).logits
    assert not torch.allclose(dropped, kept)
