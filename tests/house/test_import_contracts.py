"""The floors of src/musicvae (docs/layout.md, "The floors") as import-linter contracts in pyproject.toml: the
code keeps them, and the same contracts break on a package that climbs a floor or closes a circle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from importlinter.api import read_configuration

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint(config: Path, cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        cwd=cwd, env={"PYTHONPATH": str(pythonpath), "PATH": ""}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def floors() -> list[str]:
    """Every package named in our layers contract."""
    (layers,) = [c for c in read_configuration(str(ROOT / "pyproject.toml"))["contracts_options"] if c["type"] == "layers"]
    return [name.strip() for layer in layers["layers"] for name in layer.split("|")]


def fake_project(tmp_path: Path, extra_imports: dict[str, str]) -> Path:
    """A package `fake` with one subpackage per floor of our contract (a module `m` in each), whose modules
    import what `extra_imports` says ({"tokens/m.py": "import fake.training.m"}); the contracts, renamed."""
    pkg = tmp_path / "fake"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for floor in floors():
        (pkg / floor).mkdir()
        (pkg / floor / "__init__.py").write_text("")
        (pkg / floor / "m.py").write_text("")
        (pkg / floor / "n.py").write_text("")
    for path, line in extra_imports.items():
        (pkg / path).write_text(line + "\n")
    toml = (ROOT / "pyproject.toml").read_text()
    text = toml[toml.index("[tool.importlinter]") :].replace('"musicvae', '"fake')
    (tmp_path / "pyproject.toml").write_text(text)
    return tmp_path / "pyproject.toml"


def test_the_code_keeps_the_floors_and_has_no_circles():
    result = lint(ROOT / "pyproject.toml", ROOT, ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_a_fake_project_that_keeps_the_floors_passes(tmp_path):
    config = fake_project(tmp_path, {"training/m.py": "import fake.generation.m\nimport fake.tokens.m"})
    result = lint(config, tmp_path, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("imports", "broken"),
    [
        ({"tokens/m.py": "import fake.training.m"}, "floors"),  # climbs from tokens to training
        ({"models/m.py": "import fake.data.m"}, "floors"),  # models and data are independent
        ({"training/m.py": "import fake.training.n", "training/n.py": "import fake.training.m"}, "no circles"),
    ],
    ids=["climbs", "sideways", "circle"],
)
def test_the_contracts_break_on_a_wrong_import(tmp_path, imports, broken):
    result = lint(fake_project(tmp_path, imports), tmp_path, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 kept, 1 broken" in result.stdout
    assert any(line.startswith(broken) and line.rstrip().endswith("BROKEN") for line in result.stdout.splitlines())
