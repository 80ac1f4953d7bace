"""scripts/prepare_data.py and scripts/benchmark.py as a user runs them."""

import subprocess
import sys
from pathlib import Path

import pytest

from musicvae.config import check_group_choices
from musicvae.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def run_script(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {"MUSICVAE_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_prepare_data_prints_the_summary_then_reuses_the_cache(midi_folder, tmp_path):
    args = ("scripts/prepare_data.py", "data=midi_dir", f"data.path={midi_folder}", "data.workers=1")
    first = run_script(*args, data_dir=tmp_path / "data")
    assert first.returncode == 0, first.stderr
    for words in ("(built)", "files found", "12", "train", "segments", "vocab size", "seconds"):
        assert words in first.stdout
    assert list((tmp_path / "data" / "cache").glob("midi_dir-*/manifest.json"))
    second = run_script(*args, data_dir=tmp_path / "data")
    assert second.returncode == 0 and "(loaded from cache)" in second.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("data=midi_dir", "data.path=/nonexistent"), "error: data folder /nonexistent does not exist"),
        (("data=nosuch",), "error: unknown data=nosuch: choose one of bach, bach_16bar, bach_2bar, bach_8bar, folk, midi_dir"),
    ],
)
def test_prepare_data_user_errors_are_one_line(tmp_path, args, message):
    result = run_script("scripts/prepare_data.py", *args, data_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message) and len(result.stderr.strip().splitlines()) == 1


def test_group_choices(configs_dir):
    check_group_choices(
        configs_dir, ["data=bach", "data.bars=8", "tokenizer=remi_programs", "+x=1", "data=bach,folk"]
    )
    with pytest.raises(UserError, match="unknown data=base: choose one of bach, bach_16bar, bach_2bar, bach_8bar, folk, midi_dir"):
        check_group_choices(configs_dir, ["data=base"])
    with pytest.raises(UserError, match="unknown tokenizer=tsd"):
        check_group_choices(configs_dir, ["tokenizer=tsd"])


def test_benchmark_rejects_an_unknown_name(capsys):
    import runpy

    main = runpy.run_path(str(ROOT / "scripts" / "benchmark.py"))["main"]
    with pytest.raises(SystemExit) as info:
        main(["nosuch"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: unknown benchmark 'nosuch': choose one of data, train, sample, compare, audio (python scripts/benchmark.py data)"
    )


def test_data_configs_share_one_base(compose_cfg):
    for name in ("bach", "folk", "midi_dir"):
        data = compose_cfg("prepare_data", [f"data={name}"]).data
        assert data.name == name and data.bars == 4 and data.hop_bars == 2 and data.max_tokens == 512
        assert (
            data.transpose == 5
            and data.batch_size == 32
            and data.loader_workers == "auto"
            and data.workers is None
        )
        assert data.overlong == "truncate" and data.merge_tracks and not data.keep_drums
    assert compose_cfg("prepare_data", ["data=bach"]).data.path.endswith("midi/bach")
