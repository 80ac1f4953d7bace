"""Shared fixtures: compose the real Hydra configs, and write small synthetic MIDI folders.

Fixtures return functions so tests can shrink the real configs and vary the pieces:

    def test_x(compose_cfg, midi_folder):
        cfg = compose_cfg("prepare_data", ["data=midi_dir", f"data.path={midi_folder}"])
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import pretty_midi
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"



@pytest.fixture
def configs_dir() -> Path:
    return CONFIGS_DIR


def _compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    import musicvae.cli.schemas  # noqa: F401  the nodes the YAML files pull their defaults from

    with initialize_config_dir(config_dir=str(CONFIGS_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    """compose_cfg(config_name, overrides=()) → the real config from configs/, with overrides applied."""
    return _compose


@pytest.fixture(scope="session")
def remi_tokenizer():
    """The default tokenizer (configs/tokenizer/remi.yaml), built once per session: do not mutate it."""
    from musicvae.tokens import build_tokenizer

    return build_tokenizer(_compose("prepare_data").tokenizer)


def write_piece(
    path: Path,
    bars: int = 8,
    numerator: int = 4,
    programs: Sequence[int] = (0, 40),
    drums: bool = False,
    seed: int = 0,
    tempo: float = 120.0,
) -> Path:
    """A MIDI file of `bars` full bars in numerator/4, one note per beat and track, on the beat grid.

    Track k plays pitches in [48 + 12k, 60 + 12k); every note lasts one beat (exactly representable).
    """
    rng = random.Random(seed)
    beat = 60.0 / tempo
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(numerator, 4, 0.0))
    for k, program in enumerate(programs):
        track = pretty_midi.Instrument(program=program, name=f"track{k}")
        for b in range(bars * numerator):
            pitch = rng.randrange(48 + 12 * k, 60 + 12 * k)
            track.notes.append(
                pretty_midi.Note(
                    velocity=rng.choice([64, 80, 96]), pitch=pitch, start=b * beat, end=(b + 1) * beat
                )
            )
        pm.instruments.append(track)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
        for b in range(bars * numerator):
            kit.notes.append(
                pretty_midi.Note(
                    velocity=100, pitch=36 if b % 2 == 0 else 38, start=b * beat, end=b * beat + 0.1
                )
            )
        pm.instruments.append(kit)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))
    return path


@pytest.fixture
def make_piece() -> Callable[..., Path]:
    """make_piece(path, bars=8, numerator=4, programs=(0, 40), drums=False, seed=0) → path (see write_piece)."""
    return write_piece


def chorale_midi(stems: Sequence[str], out: Path) -> list[Path]:
    """Bach chorales as MIDI files: from data/midi/bach when `make demo` exported them there, else exported
    now from music21's bundled corpus into `out` (~0.4 s each; a fresh clone, CI)."""
    bach = Path(__file__).resolve().parents[1] / "data" / "midi" / "bach"
    if all((bach / f"{stem}.mid").is_file() for stem in stems):
        return [bach / f"{stem}.mid" for stem in stems]
    from music21 import corpus

    from musicvae.data.corpus import BACH_FORMATS, ExportJob, export_one

    sources = {Path(p).stem: p for p in corpus.getComposer("bach") if Path(p).suffix in BACH_FORMATS}
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem in stems:
        path, error = export_one(ExportJob(source=str(sources[stem]), out=str(out / f"{stem}.mid")))
        assert error is None, error
        paths.append(Path(path))
    return paths


def write_rhythm_pieces(folder: Path, count: int = 12, bars: int = 8) -> list[Path]:
    """`count` one-track 4/4 pieces whose bars differ in rhythm: each bar splits every beat into 1, 2 or 4
    notes, or holds one whole note (4, 8, 16 or 1 onsets), chosen at random per bar."""
    paths = []
    for i in range(count):
        rng = random.Random(100 + i)
        pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
        pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
        track = pretty_midi.Instrument(program=0)
        for bar in range(bars):
            per_bar = rng.choice([1, 4, 8, 16])
            step = 2.0 / per_bar  # a 4/4 bar lasts 2 s at 120 bpm
            for n in range(per_bar):
                start = bar * 2.0 + n * step
                track.notes.append(pretty_midi.Note(80, rng.randrange(55, 75), start, start + step))
        pm.instruments.append(track)
        path = folder / f"rhythm{i:03d}.mid"
        path.parent.mkdir(parents=True, exist_ok=True)
        pm.write(str(path))
        paths.append(path)
    return paths


def write_pieces(folder: Path, count: int = 12, first_seed: int = 0) -> list[Path]:
    """`count` pieces of 6-12 bars, some in 3/4, every third with a drum track, two in a subfolder."""
    paths = []
    for i in range(first_seed, first_seed + count):
        sub = "suite/" if i % 5 == 4 else ""
        path = folder / f"{sub}piece{i:03d}.mid"
        numerator = 3 if i % 4 == 3 else 4
        paths.append(write_piece(path, bars=6 + i % 7, numerator=numerator, drums=i % 3 == 0, seed=i))
    return paths


@pytest.fixture
def midi_folder(tmp_path: Path) -> Path:
    """A folder of 12 synthetic multi-track pieces (see write_pieces)."""
    folder = tmp_path / "midi"
    write_pieces(folder)
    return folder


@pytest.fixture
def add_pieces() -> Callable[..., list[Path]]:
    """add_pieces(folder, count, first_seed) → writes more pieces (new names from first_seed on)."""
    return write_pieces


@pytest.fixture
def data_cfg(compose_cfg, midi_folder: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """data_cfg(*overrides) → the real prepare_data config on `midi_folder`, cache in tmp, 1 worker."""

    def _cfg(*overrides: str) -> DictConfig:
        base = [
            "data=midi_dir",
            f"data.path={midi_folder}",
            f"paths.data_dir={tmp_path / 'data'}",
            "data.workers=1",
            "data.batch_size=4",
        ]
        return compose_cfg("prepare_data", [*base, *overrides])

    return _cfg


def pytest_configure(config):
    """One intra-op thread: the tests' tensors are tiny, and with two threads on a busy 2-core machine
    OpenMP's spin-waits made the same suite 5-15x slower (measured here). Under pytest-xdist (`make test`:
    one worker per core) the scripts a test starts get the worker's share of the cores too."""
    import torch

    torch.set_num_threads(1)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


TINY_TRAIN = (
    "data=midi_dir", "data.workers=1", "data.batch_size=8", "data.max_tokens=128", "data.transpose=0",
    "trainer=debug", "trainer.max_steps=150", "trainer.val_check_interval=75", "kl=constant", "kl.beta=0.01",
    "model.d_model=32", "model.layers=1", "model.heads=2", "model.latent_dim=8", "model.ff_mult=2",
    "model.dropout=0.0", "optim.lr=3e-3", "optim.warmup_steps=10",
    "eval.fidelity.n_reconstructions=0", "eval.fidelity.n_samples=0", "eval.pieces.n_pieces=0",
)  # fmt: skip


def _train_tiny(root: Path, write: Callable[[Path], object], *overrides: str) -> dict:
    """Train a tiny VAE (TINY_TRAIN, then `overrides`) on the pieces `write` puts in root/midi.

    Returns {"ckpt": last checkpoint path, "midi": the pieces' folder, "run_dir": the run folder}.
    """
    from musicvae.training.train import train

    write(root / "midi")
    paths = [f"data.path={root / 'midi'}", f"paths.data_dir={root / 'data'}", f"output_dir={root / 'run'}"]
    result = train(_compose("train", [*TINY_TRAIN, *paths, *overrides]))
    return {"ckpt": Path(result["last_ckpt"]), "midi": root / "midi", "run_dir": Path(result["run_dir"])}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """A tiny VAE trained long enough on 12 synthetic pieces to write notes (session-wide, ~10 s)."""
    return _train_tiny(tmp_path_factory.mktemp("tiny_run"), write_pieces)


@pytest.fixture(scope="session")
def tiny_bar_run(tmp_path_factory) -> dict:
    """`tiny_run` with one latent per bar (model.latent=bar), its fidelity evaluations on (~15 s)."""
    return _train_tiny(
        tmp_path_factory.mktemp("tiny_bar_run"), write_pieces,
        "model.latent=bar", "eval.fidelity.n_reconstructions=4", "eval.fidelity.n_samples=2", "eval.pieces.n_pieces=3",
    )  # fmt: skip


@pytest.fixture(scope="session")
def tiny_attr_run(tmp_path_factory) -> dict:
    """A per-bar model with attribute-conditioned decoding, model.attributes=[rhythm,polyphony], on pieces
    whose bars differ in rhythm (write_rhythm_pieces); β = 1 keeps z from carrying all of a bar (~20 s).
    Their polyphony is the same everywhere, so its empty classes are allowed explicitly."""
    return _train_tiny(
        tmp_path_factory.mktemp("tiny_attr_run"), write_rhythm_pieces,
        "trainer.max_steps=200", "trainer.val_check_interval=100", "kl.beta=1.0", "model.latent=bar",
        "model.attributes=[rhythm,polyphony]", "model.attribute_dim=8", "data.attributes.allow_empty_classes=true",
        "eval.fidelity.n_reconstructions=2", "eval.fidelity.n_samples=2",
    )  # fmt: skip


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """wandb offline and quiet, its config and cache in tmp_path (nothing under ~, nothing on the network)."""
    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
                       "WANDB_CONFIG_DIR": tmp_path / "wandb_config", "WANDB_CACHE_DIR": tmp_path / "wandb_cache",
                       "WANDB_DATA_DIR": tmp_path / "wandb_data", "WANDB_DISABLE_GIT": "true"}.items():  # fmt: skip
        monkeypatch.setenv(key, str(value))
