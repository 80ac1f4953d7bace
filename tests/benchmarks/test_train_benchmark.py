"""`benchmark.py train`: its settings reach the model and optimizer, and its figures are consistent."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from musicvae.benchmarks import size_from_overrides
from musicvae.benchmarks.sample import BAR_ID
from musicvae.benchmarks.train import (
    TrainBenchSize,
    benchmark_loss,
    model_flops_per_token,
    run_train_benchmark,
    synthetic_batch,
)  # fmt: skip
from musicvae.errors import UserError
from musicvae.models.vae import MusicVAE, VAEConfig
from musicvae.tokens import BOS_ID, EOS_ID


def test_settings_parse_booleans_and_numbers():
    size, device = size_from_overrides(
        TrainBenchSize, ["fused=true", "compile=false", "attn_dropout=0.1", "device=cpu"]
    )
    assert size.fused is True and size.compile is False and size.attn_dropout == 0.1 and device == "cpu"
    with pytest.raises(UserError, match="fused='yes' must be true or false"):
        size_from_overrides(TrainBenchSize, ["fused=yes"])


def test_a_delay_in_the_step_shows_in_the_step_time_the_speed_and_the_mfu(monkeypatch):
    """50 ms added to every step (in the loss) must make the median step at least 50 ms, cap the speed at
    the batch's tokens per 50 ms, and lower the MFU against the same run without it: the benchmark times
    the step it claims to, not the arithmetic around it."""
    import time

    from musicvae.benchmarks import train as bench

    size = TrainBenchSize(d_model=32, layers=1, heads=2, latent_dim=4, vocab_size=40, batch_size=2, seq_len=16,
                          steps=3, warmup=1, fused=True, attn_dropout=0.2)  # fmt: skip
    fast = run_train_benchmark(size)
    real = bench.benchmark_loss

    def late_loss(*args, **kwargs):
        time.sleep(0.05)
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "benchmark_loss", late_loss)
    slow = run_train_benchmark(size)
    assert fast["step_s_median"] < 0.05 <= slow["step_s_median"]
    assert slow["tokens_per_s"] <= 2 * 16 / 0.05 < fast["tokens_per_s"]
    assert 0 < slow["mfu"] < fast["mfu"] < 1
    assert slow["params_M"] == fast["params_M"]


def test_per_bar_batch_opens_every_bar_with_one_bar_token():
    size = TrainBenchSize(
        vocab_size=40, batch_size=2, seq_len=17, latent="bar", bars=4
    )  # 15 tokens: 3 a bar + 3
    tokens, mask, bars = synthetic_batch(size, torch.device("cpu"))
    assert mask.all() and (tokens[:, 0] == BOS_ID).all() and (tokens[:, -1] == EOS_ID).all()
    for row in tokens.tolist():
        assert [i for i, t in enumerate(row) if t == BAR_ID] == [1, 4, 7, 10]
    assert bars[0].tolist() == [0] * 4 + [1] * 3 + [2] * 3 + [3] * 7  # BOS in bar 0, EOS in the last
    assert synthetic_batch(TrainBenchSize(batch_size=2, seq_len=17), torch.device("cpu"))[2] is None


def test_tiny_per_bar_run_reports_its_latent():
    # the per-bar encoder raises without `bars`: a finished run has passed them to the model
    size = TrainBenchSize(d_model=32, layers=1, heads=2, latent_dim=4, vocab_size=40, batch_size=2, seq_len=18,
                          steps=1, warmup=0, latent="bar", bars=4, mode="prefix")  # fmt: skip
    result = run_train_benchmark(size)
    assert result["latent"] == "bar" and result["tokens_per_s"] > 0
    assert run_train_benchmark(TrainBenchSize(**{**vars(size), "latent": "segment"}))["latent"] == "segment"


def test_per_bar_loss_sums_the_kl_of_present_bars_only():
    logits = torch.zeros(1, 3, 8)
    tokens, mask = torch.tensor([[1, 4, 5, 2]]), torch.ones(1, 4, dtype=torch.bool)
    mu = torch.tensor([[[1.0, 0.0], [2.0, 0.0]]])  # (B, K, c): KL 0.5 and 2.0 nats
    nll = benchmark_loss(logits, mu[:, 0] * 0, mu[:, 0] * 0, tokens, mask)  # no KL: the NLL alone
    both = benchmark_loss(logits, mu, torch.zeros_like(mu), tokens, mask, torch.tensor([[True, True]]))
    first = benchmark_loss(logits, mu, torch.zeros_like(mu), tokens, mask, torch.tensor([[True, False]]))
    assert both - nll == pytest.approx(2.5) and first - nll == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["latent=bar", "bars=0"], r"bars=0 must be at least 1$"),
        (["latent=bar", "bars=15", "seq_len=16"], r"bars=15 must be at most seq_len - 2 = 14 "),
        (["latent=bars"], r"latent='bars' must be one of segment, bar"),
    ],
)
def test_bad_per_bar_settings_are_user_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        size_from_overrides(TrainBenchSize, overrides)


@pytest.mark.parametrize("pooling", ["summary", "mean"])
@pytest.mark.parametrize("latent", ["segment", "bar"])
def test_flop_estimate_matches_counted_flops(pooling, latent):
    """The MFU's model FLOPs are the work done: within 3% of torch's own count of a training step's matmul
    and attention FLOPs, also where summary pooling's last encoder layer computes the pooled positions only
    (counted without that, the estimate would be 28% high). Attention through SDPA's math backend, whose
    matmuls the counter sees (it does not count the fused CPU kernel)."""
    size = TrainBenchSize(d_model=128, layers=2, heads=4, latent_dim=8, vocab_size=40, batch_size=2, seq_len=64,
                          latent=latent, bars=4)  # fmt: skip
    cfg = VAEConfig(
        vocab_size=40, max_len=64, d_model=128, heads=4, encoder_layers=2, decoder_layers=2, latent_dim=8,
        pooling=pooling, latent=latent, max_bars=4,
    )  # fmt: skip
    model = MusicVAE(cfg).train()
    tokens, mask, bars = synthetic_batch(size, torch.device("cpu"))
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        out = model(tokens, mask, sample=True, bars=bars)
        benchmark_loss(out.logits, out.mu, out.logvar, tokens, mask, out.latent_mask).backward()
    estimate = model_flops_per_token(model, 64, pooled_per_row=4 if latent == "bar" else 1) * 2 * 64
    assert estimate == pytest.approx(counter.get_total_flops(), rel=0.03)
