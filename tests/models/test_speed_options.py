"""Options and internals added for speed: attention dropout apart from dropout, GPT-2's scaled residual
init, the preallocated KV cache, fp32 posterior under autocast, old checkpoints' model settings, and the
summary pooling's last encoder layer computing the pooled positions only."""

import math

import pytest
import torch

from model_cases import BAR_ID, MAX_LEN, VOCAB, tiny_vae
from musicvae.data.loading import bar_index
from musicvae.errors import UserError
from musicvae.models.checkpoint import _fill_model_keys_added_since
from musicvae.models.encoder import at_positions
from musicvae.models.layers import KVCache
from musicvae.models.vae import MusicVAE, VAEConfig


def _vae(**options) -> MusicVAE:
    torch.manual_seed(0)
    cfg = dict(vocab_size=40, max_len=16, d_model=32, heads=4, encoder_layers=2, decoder_layers=3, latent_dim=8)
    return MusicVAE(VAEConfig(**(cfg | options)))


def _twice(model: MusicVAE) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(3, 40, (2, 12))
    mask = torch.ones_like(tokens, dtype=torch.bool)
    model.train()
    return model(tokens, mask, sample=False).logits, model(tokens, mask, sample=False).logits


def test_attention_dropout_is_its_own_setting():
    a, b = _twice(_vae(dropout=0.0, attn_dropout=0.0))
    assert torch.equal(a, b)  # no dropout anywhere: training passes are deterministic
    a, b = _twice(_vae(dropout=0.0, attn_dropout=0.5))
    assert not torch.allclose(a, b)  # attention dropout alone makes them differ
    model = _vae(dropout=0.3, attn_dropout=0.0)
    attns = [m for m in model.modules() if m.__class__.__name__ == "Attention"]
    assert attns and all(m.attn_dropout == 0.0 and m.resid_dropout.p == 0.3 for m in attns)


@pytest.mark.parametrize("key", ["dropout", "attn_dropout"])
@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_dropout_out_of_range_is_refused(key, value):
    with pytest.raises(UserError, match=f"model.{key}="):
        VAEConfig(vocab_size=40, max_len=16, **{key: value})


def test_scaled_residual_init_follows_gpt2():
    model = _vae(d_model=256, heads=4, scaled_residual_init=True)
    for stack, layers in ((model.encoder, 2), (model.decoder, 3)):
        for block in stack.blocks:
            want = 0.02 / math.sqrt(2 * layers)
            assert block.attn.out.weight.std().item() == pytest.approx(want, rel=0.05)
            assert block.ff.net[2].weight.std().item() == pytest.approx(want, rel=0.05)
            assert block.attn.q.weight.std().item() == pytest.approx(0.02, rel=0.05)  # the others untouched
    plain = _vae(d_model=256, heads=4, scaled_residual_init=False)
    assert plain.decoder.blocks[0].attn.out.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_kv_cache_writes_in_place_and_grows_past_capacity():
    cache = KVCache(capacity=4)
    chunks = [torch.randn(2, 3, n, 5) for n in (1, 2, 1)]
    k, _ = cache.append(chunks[0], chunks[0] * 2)
    buffer = cache.k.data_ptr()
    for c in chunks[1:]:
        k, v = cache.append(c, c * 2)
    assert cache.k.data_ptr() == buffer  # within capacity: the same buffer, no re-allocation
    assert torch.equal(k, torch.cat(chunks, 2)) and torch.equal(v, 2 * torch.cat(chunks, 2))
    extra = torch.randn(2, 3, 3, 5)
    k, _ = cache.append(extra, extra)  # 7 positions > capacity 4: grows, history kept
    assert cache.length == 7 and cache.k.shape[2] >= 7
    assert torch.equal(k, torch.cat([*chunks, extra], 2))


def test_posterior_is_fp32_under_bf16_autocast():
    model = tiny_vae({"mode": "in_attention"}).train()
    tokens = torch.randint(3, 40, (2, 10))
    mask = torch.ones_like(tokens, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(tokens, mask, sample=True)
    assert out.logits.dtype == torch.bfloat16  # the decoder did run in bf16
    assert out.mu.dtype == out.logvar.dtype == out.z.dtype == torch.float32


def test_old_checkpoint_model_settings_keep_their_behaviour():
    old = {"d_model": 32, "dropout": 0.1, "conditioning": {"mode": "cross_attention", "n_memory": 4}}
    _fill_model_keys_added_since(old, {"bars": 2})  # written before attn_dropout, ..., latent existed
    assert old["attn_dropout"] == 0.1 and old["scaled_residual_init"] is False
    assert old["latent"] == "segment" and old["max_bars"] == 2 and old["conditioning"]["bar_view"] == "own"
    assert old["attributes"] == [] and old["attribute_dim"] == 64
    assert old["token_dropout"] == 0.0  # no decoder input dropout before model.token_dropout existed
    assert old["bias"] is True  # the layers had biases before model.bias existed
    new = {"dropout": 0.1, "attn_dropout": 0.0, "scaled_residual_init": True, "latent": "bar", "max_bars": 8,
           "attributes": ["rhythm"], "attribute_dim": 16, "attribute_classes": 8, "token_dropout": 0.3,
           "bias": False}  # fmt: skip
    want = dict(new)
    _fill_model_keys_added_since(new, {"bars": 2})
    assert new == want


@pytest.mark.slow  # torch.compile takes ~40 s on a 2-core CPU
@pytest.mark.parametrize("frozen", [False, True], ids=["compiled", "compiled-frozen"])
def test_compiled_model_samples_the_same_tokens_and_keeps_its_parameter_names(frozen):
    from musicvae.generation.decode import SamplingConfig, sample_tokens

    model = _vae(dropout=0.0).eval()
    z = torch.randn(2, 8)
    want = sample_tokens(model, z, SamplingConfig(max_tokens=12), torch.Generator().manual_seed(0))
    names = list(model.state_dict())
    model.compile_parts(frozen=frozen)
    assert list(model.state_dict()) == names
    assert sample_tokens(model, z, SamplingConfig(max_tokens=12), torch.Generator().manual_seed(0)) == want


def _full_last_layer(encoder):
    """Make `encoder` compute every position in its last layer too and pick the pooled ones after: the
    untrimmed reference the summary pooling's shortcut must equal."""
    trimmed = type(encoder)._run_blocks

    def run_blocks(x, key_mask, pooled_at=None):
        full = trimmed(encoder, x, key_mask)
        return full if pooled_at is None else at_positions(full, pooled_at)

    encoder._run_blocks = run_blocks


@pytest.mark.parametrize("latent", ["segment", "bar"])
def test_summary_pooling_computes_only_pooled_positions_in_the_last_layer(latent):
    """Same mu, logvar and gradients (to float noise: sums in another order) as the full last layer, while
    its feed-forward sees one row per latent."""
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(5, VOCAB, (3, MAX_LEN), generator=g)
    tokens[:, 0], tokens[:, 1] = 1, BAR_ID
    tokens[torch.rand(3, MAX_LEN, generator=g) < 0.25] = BAR_ID
    tokens[:, 0] = 1
    mask = torch.arange(MAX_LEN)[None] < torch.tensor([[MAX_LEN], [9], [5]])  # padded rows: bars missing
    bars = bar_index(tokens * mask, [BAR_ID])
    outs, grads = [], []
    for reference in (False, True):
        model = tiny_vae({"mode": "in_attention"}, latent=latent, encoder_layers=2).train()
        if reference:
            _full_last_layer(model.encoder)
        rows = []
        model.encoder.blocks[-1].ff.register_forward_hook(lambda m, a, out, rows=rows: rows.append(out.shape[1]))
        mu, logvar = model.encode(tokens, mask, bars)
        (mu.square().sum() + logvar.sum()).backward()
        outs.append((mu, logvar))
        grads.append({n: p.grad for n, p in model.encoder.named_parameters()})
        assert rows == ([MAX_LEN + (latent == "segment")] if reference else [mu.shape[1] if latent == "bar" else 1])
    torch.testing.assert_close(outs[0], outs[1])
    for name, grad in grads[1].items():
        torch.testing.assert_close(grads[0][name], grad, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"gradient of {name}: {m}")
