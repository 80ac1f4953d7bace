"""Decoding: top-k / top-p filtering, slerp, seeded and cached sampling."""

import json

import pytest
import torch

from musicvae.generation.decode import (
    NonFiniteModel,
    SamplingConfig,
    TokenRules,
    filter_logits,
    sample_tokens,
    slerp,
)
from musicvae.models.vae import MusicVAE, VAEConfig
from musicvae.tokens import BOS_ID, EOS_ID, PAD_ID

MODES = ["in_attention", "cross_attention", "embedding", "prefix", "none"]


def tiny_model(mode: str) -> MusicVAE:
    torch.manual_seed(0)
    cfg = VAEConfig(vocab_size=30, max_len=40, d_model=32, heads=2, encoder_layers=1, decoder_layers=2,
                    latent_dim=6, dropout=0.0, conditioning={"mode": mode})  # fmt: skip
    return MusicVAE(cfg).eval()


def test_top_k_keeps_exactly_k():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0, -1.0]])
    kept = torch.isfinite(filter_logits(logits, top_k=2))
    assert kept.tolist() == [[False, True, False, True, False]]


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(filter_logits(probs.log(), top_p=0.75))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.75 <= 0.8
    kept = torch.isfinite(filter_logits(probs.log(), top_p=0.4))
    assert kept.tolist() == [[True, False, False, False]]  # the top token always stays


def test_slerp_ends_and_norm():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    # MusicVAE's slerp on unnormalized vectors: at t=0.5 and a right angle, sin(pi/4) * (a + b).
    assert torch.allclose(slerp(a, b, 0.5), (a + b) * 2**-0.5, atol=1e-6)
    assert torch.allclose(slerp(a, 3 * a, 0.5), 2 * a)  # parallel: falls back to linear


@pytest.mark.parametrize("mode", MODES)
def test_cached_and_uncached_sampling_give_the_same_tokens(mode):
    model = tiny_model(mode)
    z = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    cfg = SamplingConfig(temperature=1.0, max_tokens=20)
    cached = sample_tokens(model, z, cfg, torch.Generator().manual_seed(5), use_cache=True)
    plain = sample_tokens(model, z, cfg, torch.Generator().manual_seed(5), use_cache=False)
    assert cached == plain
    assert all(len(s) <= 20 for s in cached)
    assert all(t not in (PAD_ID, BOS_ID, EOS_ID) for s in cached for t in s)


def test_same_seed_same_tokens_other_seed_other_tokens():
    model = tiny_model("in_attention")
    z = torch.randn(2, 6, generator=torch.Generator().manual_seed(1))
    cfg = SamplingConfig(max_tokens=25)
    a = sample_tokens(model, z, cfg, torch.Generator().manual_seed(0))
    b = sample_tokens(model, z, cfg, torch.Generator().manual_seed(0))
    c = sample_tokens(model, z, cfg, torch.Generator().manual_seed(1))
    assert a == b and a != c


def test_max_tokens_is_capped_by_the_model_length():
    model = tiny_model("prefix")
    out = sample_tokens(model, torch.zeros(1, 6), SamplingConfig(max_tokens=10_000), torch.Generator().manual_seed(0))
    assert len(out[0]) <= model.cfg.max_len - 1


def test_a_tiny_top_p_keeps_the_top_token_and_bad_settings_are_errors():
    from musicvae.errors import UserError

    logits = torch.tensor([[0.0, 3.0, 1.0]])
    assert torch.isfinite(filter_logits(logits, top_p=1e-9)).tolist() == [[False, True, False]]
    for bad in ({"top_p": 0.0}, {"temperature": 0.0}, {"top_k": -1}, {"max_tokens": 0}):
        with pytest.raises(UserError):
            SamplingConfig(**bad)


def test_banned_tokens_are_never_sampled():
    model = tiny_model("in_attention")
    out = sample_tokens(model, torch.randn(4, 6), SamplingConfig(max_tokens=30), torch.Generator().manual_seed(0),
                        rules=TokenRules(banned=(PAD_ID, BOS_ID, 3, 7, 8)))  # fmt: skip
    assert not {3, 7, 8} & {t for s in out for t in s}


def test_diverged_model_gives_one_clear_error_not_a_torch_one():
    model = tiny_model("in_attention")
    with torch.no_grad():
        model.decoder.head.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteModel, match="NaN or infinite next-token probabilities"):
        sample_tokens(model, torch.zeros(2, 6), SamplingConfig(max_tokens=5))


def test_fidelity_evaluation_of_a_diverged_model_is_skipped_with_the_reason(tmp_path):
    from musicvae.evaluation.fidelity import FidelityConfig, evaluate_fidelity

    model = tiny_model("in_attention")
    with torch.no_grad():
        model.decoder.blocks[0].attn.q.weight[0, 0] = float("inf")
    result = evaluate_fidelity(model, tokenizer=None, test_segments=[[4, 5, 6]], cfg=FidelityConfig(), run_dir=tmp_path)
    assert "decoder.blocks.0.attn.q.weight" in result["skipped"]
    assert json.loads((tmp_path / "fidelity.json").read_text()) == result


@pytest.mark.parametrize("mode", ["in_attention", "cross_attention", "embedding", "prefix", "none"])
def test_per_bar_latents_switch_at_bar_tokens_cached_as_uncached(mode):
    """z (B, K, c): cached decoding gives the uncached tokens, and no sequence opens more than K bars."""
    from model_cases import BAR_ID, C, tiny_vae

    model = tiny_vae({"mode": mode}, latent="bar", latent_dim=C)
    bias = torch.zeros(model.cfg.vocab_size)
    bias[BAR_ID] = 2.5  # Bar tokens likely (~1 in 4), so that bars switch within the 11 tokens
    model.decoder.head.bias = torch.nn.Parameter(bias)
    z = torch.randn(3, 3, C, generator=torch.Generator().manual_seed(0))
    rules = TokenRules(bar_ids=(BAR_ID,))
    cfg = SamplingConfig(max_tokens=11)
    cached = sample_tokens(model, z, cfg, torch.Generator().manual_seed(5), use_cache=True, rules=rules, bars=3)
    plain = sample_tokens(model, z, cfg, torch.Generator().manual_seed(5), use_cache=False, rules=rules, bars=3)
    assert cached == plain
    assert all(seq.count(BAR_ID) <= 3 for seq in cached) and any(seq.count(BAR_ID) >= 2 for seq in cached)
    with pytest.raises(ValueError, match="bar_ids"):
        sample_tokens(model, z, cfg, use_cache=True)
