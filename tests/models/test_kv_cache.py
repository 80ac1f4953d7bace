"""Incremental decoding with the KV cache reproduces the teacher-forced logits in every mode."""

from __future__ import annotations

import pytest
import torch

from model_cases import CONDITIONINGS, MAX_LEN, VOCAB, WITH_Z, C, case_id, tiny_vae
from musicvae.models.vae import MusicVAE


def make_model(conditioning: dict) -> MusicVAE:
    return tiny_vae(conditioning, dropout=0.1)  # eval mode: the cache must also hold with dropout configured


def incremental(model: MusicVAE, tokens: torch.Tensor, z: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    cache = model.decoder.new_cache()
    out, start = [], 0
    for n in chunks:
        out.append(model.decode(tokens[:, start : start + n], z, cache=cache))
        start += n
    assert start == tokens.shape[1]
    return torch.cat(out, dim=1)


CHUNKINGS = {
    "chunk4-then-ones": [4] + [1] * (MAX_LEN - 4),
    "all-ones": [1] * MAX_LEN,
    "uneven": [3, 1, 2, 1, 4, 1],  # multi-token steps after the cache is filled (offset causal mask)
}


@pytest.mark.parametrize("chunking", CHUNKINGS, ids=list(CHUNKINGS))
@pytest.mark.parametrize("conditioning", CONDITIONINGS, ids=case_id)
def test_cache_matches_full_pass(conditioning, chunking):
    model = make_model(conditioning)
    torch.manual_seed(1)
    tokens = torch.randint(0, VOCAB, (3, MAX_LEN))
    z = torch.randn(3, C)
    with torch.no_grad():
        full = model.decode(tokens, z)
        steps = incremental(model, tokens, z, CHUNKINGS[chunking])
    assert steps.shape == full.shape == (3, MAX_LEN, VOCAB)
    torch.testing.assert_close(steps, full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("conditioning", CONDITIONINGS, ids=case_id)
def test_cache_length_and_state(conditioning):
    model = make_model(conditioning)
    torch.manual_seed(2)
    tokens = torch.randint(0, VOCAB, (3, 6))
    z = torch.randn(3, C)
    cache = model.decoder.new_cache()
    n_prefix = model.conditioning.max_prefix  # 1 latent per segment: its whole prefix
    with torch.no_grad():
        model.decode(tokens[:, :4], z, cache=cache)
        assert cache.length == 4 + n_prefix
        assert all(c.length == 4 + n_prefix for c in cache.self_attn)
        model.decode(tokens[:, 4:5], z, cache=cache)
        model.decode(tokens[:, 5:6], z, cache=cache)
    assert cache.length == 6 + n_prefix
    assert all(c.length == 6 + n_prefix for c in cache.self_attn)
    if model.conditioning.uses_memory:
        assert all(c.length == model.conditioning.n_memory for c in cache.cross_attn)  # computed once


@pytest.mark.parametrize("conditioning", WITH_Z, ids=case_id)
def test_cache_keeps_first_z(conditioning):
    """The z given at the first step conditions the whole incremental decode."""
    model = make_model(conditioning)
    torch.manual_seed(3)
    tokens = torch.randint(0, VOCAB, (3, 5))
    z = torch.randn(3, C)
    with torch.no_grad():
        full = model.decode(tokens, z)
        cache = model.decoder.new_cache()
        first = model.decode(tokens[:, :3], z, cache=cache)
        rest = model.decode(tokens[:, 3:], torch.randn(3, C), cache=cache)  # z ignored after step one
    torch.testing.assert_close(torch.cat([first, rest], 1), full, rtol=0, atol=1e-5)


def test_separate_caches_are_independent():
    model = make_model({"mode": "in_attention"})
    torch.manual_seed(4)
    tokens = torch.randint(0, VOCAB, (3, 5))
    z = torch.randn(3, C)
    with torch.no_grad():
        full = model.decode(tokens, z)
        a, b = model.decoder.new_cache(), model.decoder.new_cache()
        model.decode(tokens[:, :3], z, cache=a)
        out_b = model.decode(tokens[:, :2], z, cache=b)
        torch.testing.assert_close(out_b, full[:, :2], rtol=0, atol=1e-5)
        torch.testing.assert_close(model.decode(tokens[:, 3:], z, cache=a), full[:, 3:], rtol=0, atol=1e-5)
