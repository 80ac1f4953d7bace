"""The package as users install it from a wheel (not `pip install -e`): it carries its configs, and its console
scripts train and sample from a folder outside the checkout. Slow: builds the wheel and a venv (~1 min)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import TINY_TRAIN, write_pieces

ROOT = Path(__file__).resolve().parents[2]


def run(args: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def test_config_dir_prefers_the_variable_then_the_packaged_configs(monkeypatch, tmp_path):
    """$MUSICVAE_CONFIG_DIR overrides; in a checkout (no musicvae/configs beside the code) it is the repo's."""
    import musicvae.cli as cli

    monkeypatch.delenv(cli.CONFIG_DIR_VARIABLE, raising=False)
    assert cli.config_dir() == ROOT / "configs"
    monkeypatch.setenv(cli.CONFIG_DIR_VARIABLE, str(tmp_path))
    assert cli.config_dir() == tmp_path.resolve()


@pytest.mark.slow
def test_wheel_installs_with_configs_and_its_commands_run_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, ROOT], ROOT)
    (wheel,) = wheels.glob("musicvae-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*.yaml"))
    assert {f"musicvae/{c}" for c in configs} <= names  # every YAML file, under the package

    # A fresh venv that installs only the wheel; every dependency (torch included) comes from the running
    # environment's site-packages through a .pth file, so nothing is downloaded or built.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path)
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], tmp_path)

    work = tmp_path / "elsewhere"  # outside the checkout; no MUSICVAE_CONFIG_DIR
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MUSICVAE_CONFIG_DIR", "MUSICVAE_DATA_DIR", "PYTHONPATH")}
    where = run([python, "-c", "import musicvae.cli as c; print(c.__file__); print(c.CONFIG_DIR)"], work, env)
    module_file, config_dir = map(Path, where.stdout.split())
    assert venv in module_file.parents and config_dir == module_file.parent.parent / "configs"

    write_pieces(work / "midi", count=6)
    train = [
        venv / "bin" / "musicvae-train", *TINY_TRAIN, "data.path=midi", "paths.data_dir=data", "output_dir=run",
        "trainer.max_steps=4", "trainer.val_check_interval=2",
    ]  # fmt: skip
    run(train, work, env)
    ckpt = work / "run" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    run([venv / "bin" / "musicvae-sample", f"ckpt={ckpt}", "mode=prior", "n=1", "out_dir=samples"], work, env)
    assert list((work / "samples").glob("*.mid")) and list((work / "samples").glob("*.ogg"))
