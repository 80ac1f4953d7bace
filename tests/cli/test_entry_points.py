"""The commands have one home (musicvae.cli): console scripts and scripts/*.py run the same main()."""

from __future__ import annotations

import importlib
import runpy
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import musicvae.cli.common as common

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["train", "sample", "evaluate", "attributes", "prepare_data", "compare", "render", "benchmark"]


@pytest.mark.parametrize("name", COMMANDS)
def test_script_and_console_script_run_the_cli_main(name):
    cli_main = importlib.import_module(f"musicvae.cli.{name}").main
    assert runpy.run_path(str(ROOT / "scripts" / f"{name}.py"))["main"] is cli_main
    (entry,) = [e for e in entry_points(group="console_scripts") if e.name == f"musicvae-{name.replace('_', '-')}"]
    assert entry.load() is cli_main


def test_every_script_is_a_command():
    assert sorted(p.stem for p in (ROOT / "scripts").glob("*.py")) == sorted(COMMANDS)


def test_a_missing_configs_folder_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(common, "CONFIG_DIR", tmp_path / "nowhere")
    with pytest.raises(SystemExit) as exit_info:
        common.check_command_line()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0] and "MUSICVAE_CONFIG_DIR" in err[0]
