"""The README is a door, and every command in it runs ("A new user's first hour", item 3).

Every fenced shell command of README.md is classified in COMMANDS below: RUN (the slow test runs it at tiny
size) or SKIP with the reason; a command the table does not classify fails the fast test, so no new README
command goes unchecked. Fast (the default run): each `scripts/<name>.py` / `musicvae-<name>` command's Hydra
config is composed from configs/ with its overrides, skipped ones too (an unknown key, group or option fails),
the options of the argparse commands and the make targets exist, and every relative link of README.md and
docs/*.md names a file, folder or heading that exists. Slow: the RUN commands in README order, in a temporary
folder that stands for the user's own (`/my/midi` a folder of synthetic pieces, `a.mid`, `b.mid` two of them),
each with tiny-size overrides appended, checked for exit code 0 and the files it should write.

    OMP_NUM_THREADS=1 python -m pytest -q -n 0 tests/docs/test_readme.py -s     # -s prints the skipped ones
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import write_piece, write_pieces

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 150
HYDRA_COMMANDS = {"train", "sample", "evaluate", "attributes", "prepare_data"}  # config name = command name
ARGPARSE_COMMANDS = {"compare", "render", "benchmark"}

# The README's placeholders: what the fast test composes with (valid override syntax), and what the slow
# test puts in their place (the paths in the temporary working folder; a glob takes the first, oldest match).
PLACEHOLDERS = {"outputs/train/<run>": "outputs/train/*", "multirun/<date_time>": "multirun/*"}
COMPOSE_AS = {"outputs/train/<run>": "outputs/train/RUN", "multirun/<date_time>": "multirun/DATE_TIME"}

# Tiny sizes: the data settings shared by prepare_data and train (so training finds the prepared cache),
# and a model and run that train in seconds (as tests/training/conftest.py's train_cfg).
TINY_DATA = ("data.workers=1", "data.batch_size=4", "data.max_tokens=128", "data.val_fraction=0.25")
TINY_TRAIN = (
    *TINY_DATA, "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.enable_progress_bar=false",
    "model.d_model=32", "model.layers=1", "model.heads=2", "model.latent_dim=8", "model.ff_mult=2",
    "optim.warmup_steps=1", "eval.fidelity.n_reconstructions=2", "eval.fidelity.n_samples=2",
    "eval.fidelity.n_files=1", "eval.fidelity.interpolation_steps=0",
)  # fmt: skip


@dataclass(frozen=True)
class Rule:
    pattern: str  # a regex searched in the command as written (comments dropped, continuations joined)
    run: bool  # True: the slow test runs it; False: skipped, for `why`
    why: str
    tiny: tuple[str, ...] = ()  # appended when run
    writes: tuple[str, ...] = ()  # globs under the working folder that the command must create or rewrite
    prints: str = ""  # a regex its stdout must match


# First match wins: the SKIP rules come first.
COMMANDS = [
    Rule(r"^make demo$", False, "the main job itself, ~15 min on 2 cores: its steps (prepare_data, the "
         "collapse_demo sweep, compare, sample) run at tiny size below; docs/results/demo/ holds a measured run"),
    Rule(r"^make test$", False, "the test suite this test belongs to (CI runs it because the README says so)"),
    Rule(r"^make install$", False, "installs into .venv: the environment this test runs in is that install"),
    Rule(r"^pip install \.$", False, "builds and installs the wheel (~1 min): tests/cli/test_wheel.py (slow) "
         "does it offline and runs its console scripts outside the checkout"),
    Rule(r"\bhydra/launcher=slurm\b", False, "needs a SLURM cluster (composed by the fast test; "
         "tests/cli/test_launchers.py checks the sbatch script it submits)"),
    Rule(r"\btrainer=(gpu|ddp)\b", False, "needs a GPU (composed by the fast test)"),
    Rule(r"^python scripts/prepare_data\.py ", True, "", TINY_DATA, ("data/cache/midi_dir-*/manifest.json",)),
    Rule(r"^python scripts/train\.py -m ", True, "", TINY_TRAIN,
         ("multirun/*/*/checkpoints/last.ckpt", "multirun/*/report/summary.md", "multirun/*/report/index.html")),
    Rule(r"^python scripts/train\.py ", True, "", TINY_TRAIN,
         ("outputs/train/*/checkpoints/last.ckpt", "outputs/train/*/fidelity.json", "outputs/train/*/metrics.csv")),
    Rule(r"^python scripts/compare\.py ", True, "", (),
         ("multirun/*/report/summary.md", "multirun/*/report/verdicts.csv")),
    Rule(r"^python scripts/sample\.py ", True, "", ("max_tokens=64",),
         ("outputs/samples/*/samples.json", "outputs/samples/*/*.mid", "outputs/samples/*/*.ogg")),
    Rule(r"^python scripts/render\.py ", True, "", (), ("a.ogg", "my_midi/**/*.ogg")),
    Rule(r"^python -m json\.tool outputs/train/<run>/fidelity\.json$", True, "", (), (), prints=r"^\{"),
    Rule(r"^python scripts/attributes\.py ", True, "", ("max_segments=16",),
         ("outputs/train/*/checkpoints/*.attributes.pt",)),
    Rule(r"^python scripts/evaluate\.py .*fidelity=true", True, "", ("pieces.n_pieces=1",),
         ("outputs/train/*/checkpoints/fidelity/pieces.json",)),
    Rule(r"^python scripts/evaluate\.py ", True, "", ("n_segments=2", "amounts=[-1.0,1.0]"),
         ("outputs/train/*/checkpoints/control/evaluation.json",)),
]  # fmt: skip


def fenced_commands(text: str) -> list[str]:
    """Every command of the ```bash / ```sh / ```console blocks: backslash continuations joined, comments and
    blank lines dropped, a console prompt (`$ `) taken off."""
    commands = []
    for block in re.findall(r"^```(?:bash|sh|shell|console)[^\n]*\n(.*?)^```", text, re.S | re.M):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.strip().removeprefix("$ ")
            words = shlex.split(line, comments=True)
            assert not any(re.search(r"[\s'\"]", w) for w in words), f"a word with a space or quote: {line}"
            if words:
                commands.append(" ".join(words))
    return commands


def rule_of(command: str) -> Rule | None:
    return next((rule for rule in COMMANDS if re.search(rule.pattern, command)), None)


def program(words: list[str]) -> tuple[str, list[str]] | None:
    """('train', overrides) for `python scripts/train.py ...` or `musicvae-train ...`; None for anything else."""
    if len(words) > 1 and words[0] == "python" and re.fullmatch(r"scripts/\w+\.py", words[1]):
        return Path(words[1]).stem, words[2:]
    if words[0].startswith("musicvae-"):
        return words[0].removeprefix("musicvae-").replace("-", "_"), words[1:]
    return None


README_COMMANDS = fenced_commands(README.read_text())


# --- fast -----------------------------------------------------------------------------------------------


def test_the_readme_is_a_door_that_opens_on_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines: move reference material to docs/"
    )
    assert README_COMMANDS[:2] == ["make demo", "make test"], (
        "the README's first commands (CI runs `make test`)"
    )
    dated = [line for line in lines if re.search(r"\b20\d\d-\d\d-\d\d\b", line)]
    assert not dated, f"dated timings belong in docs/results/, with their command: {dated}"


def test_every_readme_command_is_classified_and_the_skipped_ones_say_why():
    unclassified = [c for c in README_COMMANDS if rule_of(c) is None]
    assert not unclassified, f"add these README commands to COMMANDS in {Path(__file__).name}: {unclassified}"
    unused = [r.pattern for r in COMMANDS if not any(rule_of(c) is r for c in README_COMMANDS)]
    assert not unused, f"rules that classify no README command (stale): {unused}"
    skipped = [(c, rule_of(c).why) for c in README_COMMANDS if not rule_of(c).run]
    assert all(why for _, why in skipped)
    print("\nREADME commands not run, and why:")
    for command, why in skipped:
        print(f"  SKIP  {command}\n        {why}")
    print(f"run by the slow test: {sum(rule_of(c).run for c in README_COMMANDS)} of {len(README_COMMANDS)}")


def compose_overrides(name: str, overrides: list[str]) -> None:
    """Compose `name`'s config with the overrides as the command gives them (each value of a sweep in turn)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    import musicvae.cli.schemas  # noqa: F401  the nodes the YAML files pull their defaults from
    from musicvae.cli.evaluate import control_switch
    from musicvae.config import check_group_choices

    overrides = [
        control_switch(o) if name == "evaluate" else o for o in overrides if o not in ("-m", "--multirun")
    ]
    check_group_choices(ROOT / "configs", overrides)  # what the command checks before Hydra sees it
    parsed = OverridesParser.create().parse_overrides(overrides)
    sweeps = {i: list(o.sweep_string_iterator()) for i, o in enumerate(parsed) if o.is_sweep_override()}

    def variant(choice: dict[int, str]) -> list[str]:
        return [
            f"{parsed[i].get_key_element()}={choice.get(i, sweeps[i][0])}" if i in sweeps else o
            for i, o in enumerate(overrides)
        ]

    variants = [variant({}), *(variant({i: v}) for i, values in sweeps.items() for v in values[1:])]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for overrides in variants:
            compose(config_name=name, overrides=overrides, return_hydra_config=True)


def argparse_help(name: str, capsys) -> str:
    main = importlib.import_module(f"musicvae.cli.{name}").main
    with pytest.raises(SystemExit):
        main(["--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("command", README_COMMANDS)
def test_the_readme_command_names_only_keys_groups_and_options_that_exist(command, capsys):
    words = shlex.split(command)
    for placeholder, value in COMPOSE_AS.items():
        words = [w.replace(placeholder, value) for w in words]
    found = program(words)
    if words[0] == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
        assert words[1] in targets
    elif words[:2] == ["pip", "install"]:
        assert (ROOT / words[2] / "pyproject.toml").is_file()
    elif words[:2] == ["python", "-m"]:
        assert importlib.util.find_spec(words[2]) is not None
    elif found and found[0] in HYDRA_COMMANDS:
        compose_overrides(*found)
    elif found and found[0] in ARGPARSE_COMMANDS:
        helptext = argparse_help(found[0], capsys)
        options = [w.split("=")[0] for w in found[1] if w.startswith("--")]
        assert all(option in helptext for option in options), (options, helptext)
        assert [w for w in found[1] if not w.startswith("-")], "a path to work on"
    else:
        pytest.fail(f"no check for {command!r}: teach this test what it runs")


def test_a_typo_in_a_readme_command_fails_the_check():
    """The check can fail: an unknown key, option and group value are each refused."""
    from hydra.errors import HydraException, MissingConfigException

    from musicvae.errors import UserError

    with pytest.raises((HydraException, UserError)):
        compose_overrides("train", ["data=midi_dir", "data.pth=/my/midi"])
    with pytest.raises((MissingConfigException, UserError)):
        compose_overrides("train", ["model/conditioning=in_atention,none"])
    with pytest.raises(HydraException):
        compose_overrides("sample", ["ckpt=x.ckpt", "mode=prior", "top_q=0.9"])


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_names_something_that_exists(doc):
    missing = []
    for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            missing.append(target)
        elif anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", file.read_text(), re.M)
            if anchor not in {github_anchor(h) for h in headings}:
                missing.append(target)
    assert not missing, f"{doc.name} links to what does not exist: {missing}"


def test_docs_hold_no_dated_timings():
    for doc in DOCS:
        dated = re.findall(r".*\b20\d\d-\d\d-\d\d\b.*", doc.read_text())
        assert not dated, f"{doc.name}: measured numbers belong in docs/results/, with their command: {dated}"


BASES = {"data": {"base"}, "kl": {"base"}, "trainer": {"default"}}  # what a group's options start from


def test_the_configuration_reference_lists_every_option_of_every_group():
    """docs/configuration.md's group table against configs/: every file an option, and no option missing."""
    table = re.findall(r"^\| `([\w/]+)` \| (.+?) \|", (ROOT / "docs" / "configuration.md").read_text(), re.M)
    assert table
    for group, cell in table:
        listed = set(re.findall(r"`(\w+)`", cell))
        on_disk = {p.stem for p in (ROOT / "configs" / group).glob("*.yaml")} - BASES.get(group, set())
        assert listed == on_disk, (group, listed ^ on_disk)


# --- slow -----------------------------------------------------------------------------------------------


def resolve(word: str, work: Path) -> str:
    for placeholder, pattern in PLACEHOLDERS.items():
        if placeholder in word:
            matches = sorted(glob.glob(pattern, root_dir=work))
            assert matches, f"nothing yet for {placeholder} in {work}"
            word = word.replace(placeholder, matches[0])
    return word


def argv(words: list[str], work: Path) -> list[str]:
    """What a user's shell would run, with the placeholders filled in: `python` is this interpreter, the
    scripts are the checkout's, `musicvae-x` the console script beside it."""
    words = [resolve(w, work).replace("/my/midi", str(work / "my_midi")) for w in words]
    if words[0] == "python":
        words[0] = sys.executable
        if len(words) > 1 and words[1].startswith("scripts/"):
            words[1] = str(ROOT / words[1])
    elif words[0].startswith("musicvae-"):
        words[0] = str(Path(sys.executable).parent / words[0])
    return words


def snapshot(work: Path, patterns: tuple[str, ...]) -> dict[str, dict[str, float]]:
    return {
        p: {f: os.path.getmtime(work / f) for f in glob.glob(p, root_dir=work, recursive=True)}
        for p in patterns
    }


@pytest.mark.slow
def test_the_readme_commands_run_at_tiny_size(tmp_path):
    work = tmp_path / "work"
    write_pieces(work / "my_midi")
    for name, seed in (("a.mid", 100), ("b.mid", 101)):
        write_piece(work / name, bars=8, seed=seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    env.pop("MUSICVAE_DATA_DIR", None)  # data/ under the working folder, as a user's
    env.pop("MUSICVAE_CONFIG_DIR", None)
    ran = []
    for command in README_COMMANDS:
        rule = rule_of(command)
        if not rule.run:
            continue
        words = shlex.split(command)
        before = snapshot(work, rule.writes)
        done = subprocess.run(
            argv(words, work) + list(rule.tiny),
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        after = snapshot(work, rule.writes)
        for pattern in rule.writes:
            changed = [f for f, t in after[pattern].items() if before[pattern].get(f) != t]
            assert changed, f"{command}: wrote nothing matching {pattern}"
        if rule.prints:
            assert re.search(rule.prints, done.stdout, re.M), done.stdout[-2000:]
        ran.append(command)
    assert ran == [c for c in README_COMMANDS if rule_of(c).run]
