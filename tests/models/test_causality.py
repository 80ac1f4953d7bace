"""The decoder is causal in every conditioning mode, and (except `none`) its logits depend on z."""

from __future__ import annotations

import pytest
import torch

from model_cases import CONDITIONINGS, MAX_LEN, VOCAB, WITH_Z, C, case_id, tiny_vae


def other_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """A different id at every position."""
    return (tokens + torch.randint(1, VOCAB, tokens.shape)) % VOCAB

def make_model(conditioning: dict):
    return tiny_vae(conditioning, encoder_layers=2, dropout=0.1)  # eval: dropout would make two passes differ


@pytest.mark.parametrize("conditioning", CONDITIONINGS, ids=case_id)
def test_decoder_is_causal(conditioning):
    model = make_model(conditioning)
    torch.manual_seed(1)
    b, t = 2, MAX_LEN
    tokens = torch.randint(0, VOCAB, (b, t))
    z = torch.randn(b, C)
    with torch.no_grad():
        base = model.decode(tokens, z)
        for pos in range(t):
            # every token after `pos` changed: logits at <= pos unchanged
            later = tokens.clone()
            later[:, pos + 1 :] = other_tokens(tokens)[:, pos + 1 :]
            torch.testing.assert_close(
                model.decode(later, z)[:, : pos + 1], base[:, : pos + 1], rtol=0, atol=1e-6
            )
            # only token `pos` changed: logits before it unchanged, logits at it changed
            one = tokens.clone()
            one[:, pos] = other_tokens(tokens)[:, pos]
            logits = model.decode(one, z)
            torch.testing.assert_close(logits[:, :pos], base[:, :pos], rtol=0, atol=1e-6)
            assert (logits[:, pos] - base[:, pos]).abs().amax(-1).min() > 1e-4, (
                f"token {pos} not seen at {pos}"
            )


@pytest.mark.parametrize("conditioning", CONDITIONINGS, ids=case_id)
def test_future_tokens_do_not_leak_through_batch(conditioning):
    """Sequences in a batch are independent: changing one row leaves the other rows' logits alone."""
    model = make_model(conditioning)
    torch.manual_seed(2)
    tokens = torch.randint(0, VOCAB, (3, MAX_LEN))
    z = torch.randn(3, C)
    with torch.no_grad():
        base = model.decode(tokens, z)
        changed = tokens.clone()
        changed[1] = other_tokens(tokens[1:2])[0]
        logits = model.decode(changed, z)
    torch.testing.assert_close(logits[[0, 2]], base[[0, 2]], rtol=0, atol=1e-6)


def test_none_ignores_z_exactly():
    model = make_model({"mode": "none"})
    torch.manual_seed(3)
    tokens = torch.randint(0, VOCAB, (3, MAX_LEN))
    with torch.no_grad():
        a = model.decode(tokens, torch.randn(3, C))
        b = model.decode(tokens, 10 * torch.randn(3, C))
    assert torch.equal(a, b)


@pytest.mark.parametrize("conditioning", WITH_Z, ids=case_id)
def test_logits_depend_on_z(conditioning):
    model = make_model(conditioning)
    torch.manual_seed(3)
    tokens = torch.randint(0, VOCAB, (3, MAX_LEN))
    with torch.no_grad():
        a = model.decode(tokens, torch.randn(3, C))
        b = model.decode(tokens, torch.randn(3, C))
    # at every position of every sequence, including the very first (BOS) prediction
    assert (a - b).abs().amax(-1).min() > 1e-4


@pytest.mark.parametrize("conditioning", WITH_Z, ids=case_id)
def test_z_rows_are_per_sequence(conditioning):
    """Row i of z conditions row i of the batch only."""
    model = make_model(conditioning)
    torch.manual_seed(4)
    tokens = torch.randint(0, VOCAB, (3, MAX_LEN))
    z = torch.randn(3, C)
    z2 = z.clone()
    z2[1] = torch.randn(C)
    with torch.no_grad():
        a, b = model.decode(tokens, z), model.decode(tokens, z2)
    torch.testing.assert_close(a[[0, 2]], b[[0, 2]], rtol=0, atol=1e-6)
    assert (a[1] - b[1]).abs().max() > 1e-4
