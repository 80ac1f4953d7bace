"""`benchmark.py train`: its settings reach the model and optimizer, and its figures are consistent."""

import pytest

from musicvae.benchmarks import size_from_overrides
from musicvae.benchmarks.train import TrainBenchSize, run_train_benchmark
from musicvae.errors import UserError


def test_settings_parse_booleans_and_numbers():
    size, device = size_from_overrides(TrainBenchSize, ["fused=true", "compile=false", "attn_dropout=0.1", "device=cpu"])
    assert size.fused is True and size.compile is False and size.attn_dropout == 0.1 and device == "cpu"
    with pytest.raises(UserError, match="fused='yes' must be true or false"):
        size_from_overrides(TrainBenchSize, ["fused=yes"])


def test_tiny_run_reports_consistent_figures():
    size = TrainBenchSize(d_model=32, layers=1, heads=2, latent_dim=4, vocab_size=40, batch_size=2, seq_len=16,
                          steps=2, warmup=1, fused=True, attn_dropout=0.2)  # fmt: skip
    result = run_train_benchmark(size)
    assert result["tokens_per_s"] == pytest.approx(2 * 16 / result["step_s_median"])
    assert result["mfu"] == pytest.approx(result["model_tflops"] / result["matmul_peak_tflops"])
    assert 0 < result["mfu"] < 1
