"""`benchmark.py sample`: per-bar decoding does the same fixed work cached and uncached, bad settings are
user errors, and latent=segment reports what it did before per-bar latents."""

import runpy
from pathlib import Path

import pytest

from musicvae.benchmarks import size_from_overrides
from musicvae.benchmarks.sample import (
    BAR_ID,
    SampleBenchSize,
    build_sample_setup,
    decode,
    run_sample_benchmark,
)
from musicvae.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "d_model": 32,
    "layers": 1,
    "heads": 2,
    "latent_dim": 4,
    "vocab_size": 20,
    "batch_size": 3,
    "repeats": 1,
}


@pytest.mark.parametrize("length", [20, 23])  # 23: 5 bars of 4 tokens, the last bar takes 3 more
def test_per_bar_rows_hold_exactly_the_bars_and_tokens_cached_or_not(length):
    setup = build_sample_setup(SampleBenchSize(**TINY, latent="bar", bars=5, length=length))
    assert setup.z.shape == (3, 5, 4)
    cached, uncached = decode(setup, use_cache=True, seed=0), decode(setup, use_cache=False, seed=0)
    assert cached == uncached  # the same draws: the same work on both sides
    for row in cached:
        assert len(row) == length
        assert [i for i, t in enumerate(row) if t == BAR_ID] == [0, 4, 8, 12, 16]
    assert len({tuple(row) for row in cached}) == 3  # the other tokens are still drawn


def test_per_bar_result_names_its_latent_and_bars():
    result = run_sample_benchmark(SampleBenchSize(**TINY, latent="bar", bars=4, length=12))
    assert result["latent"] == "bar" and result["bars"] == 4 and result["length"] == 12
    assert result["speedup"] == pytest.approx(result["cached_tokens_per_s"] / result["uncached_tokens_per_s"])


def test_segment_result_keeps_its_keys():
    result = run_sample_benchmark(SampleBenchSize(**TINY, length=8))
    assert set(result) == {
        "device", "mode", "batch_size", "length", "cached_tokens_per_s", "uncached_tokens_per_s", "speedup",
    }  # fmt: skip
    assert "latent" not in SampleBenchSize().shown() and SampleBenchSize().length == 256


def test_default_length_is_per_latent():
    assert SampleBenchSize(latent="bar").length == 16 * 16
    assert SampleBenchSize(latent="bar", bars=8).length == 8 * 16
    assert SampleBenchSize(latent="bar", length=1024).length == 1024


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["latent=bar", "bars=0"], r"bars=0 must be at least 1$"),
        (["latent=bar", "bars=9", "length=8"], r"bars=9 must be at most length=8 "),
        (["latent=bars"], r"latent='bars' must be one of segment, bar"),
    ],
)
def test_bad_settings_are_user_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        size_from_overrides(SampleBenchSize, overrides)


def test_script_prints_one_line_for_bad_bars(capsys):
    main = runpy.run_path(str(ROOT / "scripts" / "benchmark.py"))["main"]
    with pytest.raises(SystemExit) as info:
        main(["sample", "latent=bar", "bars=17", "length=16"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: benchmark setting bars=17 must be at most length=16") and "\n" not in err


@pytest.mark.slow  # torch.compile: ~1 min on a 2-core CPU
def test_compiled_sampling_runs_frozen_and_full_length():
    """compile=true: the decoder compiled with frozen weights, every timed row still `length` tokens long."""
    result = run_sample_benchmark(SampleBenchSize(**TINY, length=12, compile=True))
    assert result["compile"] is True and result["cached_tokens_per_s"] > 0 and result["uncached_tokens_per_s"] > 0
    assert "compile" in SampleBenchSize(compile=True).shown() and "compile" not in SampleBenchSize().shown()
