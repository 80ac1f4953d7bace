"""The data benchmark on a synthetic corpus: seeded files, reused, figures from a real build."""

import pytest

from musicvae.benchmarks.data import (
    DataBenchOptions,
    run_data_benchmark,
    synthetic_piece,
    write_synthetic_corpus,
)
from musicvae.data.segments import content_key


def test_synthetic_corpus_is_seeded_varied_and_reused(tmp_path):
    a = write_synthetic_corpus(tmp_path / "a", 120, workers=2)
    b = write_synthetic_corpus(tmp_path / "b", 120, workers=1)
    files = sorted(p.relative_to(a) for p in a.rglob("*.mid"))
    assert len(files) == 120 and files == sorted(p.relative_to(b) for p in b.rglob("*.mid"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)  # the seed fixes every byte
    lengths = {synthetic_piece(i).end() for i in range(120)}
    assert len(lengths) > 5  # varied lengths
    assert content_key(synthetic_piece(49)) == content_key(synthetic_piece(48)) != content_key(synthetic_piece(47))
    stamp = (a / files[0]).stat().st_mtime_ns
    write_synthetic_corpus(a, 120)
    assert (a / files[0]).stat().st_mtime_ns == stamp  # found, not written again
    write_synthetic_corpus(a, 60)
    assert len(list(a.rglob("*.mid"))) == 60  # another count: written afresh


def test_benchmark_options_are_told_from_overrides():
    options, overrides = DataBenchOptions.split_args(["synthetic=5", "data.workers=2", "repeats=3", "data=folk"])
    assert options == DataBenchOptions(synthetic=5, repeats=3) and overrides == ["data.workers=2", "data=folk"]
    assert DataBenchOptions(synthetic=5).tries == 1 and DataBenchOptions().tries == 2


@pytest.mark.slow  # a benchmark end to end
def test_data_benchmark_on_a_synthetic_corpus(configs_dir, tmp_path):
    figures = run_data_benchmark(
        str(configs_dir),
        ["synthetic=40", f"synthetic_dir={tmp_path / 'midi'}", f"paths.data_dir={tmp_path}", "data.workers=2"],
    )
    assert figures["files"] == 40 and figures["workers"] == 2
    assert figures["files_per_s_all"] > 0 and figures["files_per_s_1"] > 0 and figures["train_batches"] > 0
    assert figures["rss_build_mib"] >= figures["rss_imported_mib"] > 10 and figures["rss_worker_mib"] > 0
    assert 0 < figures["stored_tokens"] < figures["window_tokens"]  # 4-bar windows every 2 bars share tokens
    assert not list((tmp_path / "cache").glob("*"))  # the real cache folder is left alone
