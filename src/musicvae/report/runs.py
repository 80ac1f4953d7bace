"""Reading a sweep dir: one `Run` per run folder (metrics.csv, config.yaml, fidelity.json, samples/)."""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from musicvae.data.cache import MIDI_SUFFIXES
from musicvae.errors import UserError
from musicvae.evaluation.pieces import flat_summary
from musicvae.generation.audio import AUDIO_SUFFIXES
from musicvae.report.stats import Series  # step -> value, steps ascending

log = logging.getLogger(__name__)

MODE_ORDER = ("in_attention", "cross_attention", "embedding", "prefix", "none")
# fidelity.json, flattened: pitch_class_entropy {samples, data} -> pitch_class_entropy_samples, ..._data.
FIDELITY = (
    ("piece_chroma", "piece chroma"),  # whole test pieces as sample.py reconstructs them (evaluation/pieces.py)
    ("piece_chroma_shuffled", "piece chroma, shuffled z"),
    ("piece_groove", "piece groove"),
    ("piece_metre", "piece metre kept"),
    ("piece_note_ratio", "piece notes, out / in"),
    ("chroma_sim", "2-bar segment chroma"),  # 32 spread test segments (evaluation/fidelity.py)
    ("groove_sim", "2-bar segment groove"),
    ("pitch_class_entropy_samples", "pitch-class entropy, samples"),
    ("pitch_class_entropy_data", "pitch-class entropy, data"),
    ("note_density_samples", "note density, samples"),
    ("note_density_data", "note density, data"),
)
SAMPLE_SUFFIXES = (*MIDI_SUFFIXES, ".png", *AUDIO_SUFFIXES)
REPORT_DIRNAME = "report"



@dataclass
class Run:
    """One training run of the sweep."""

    name: str  # the run folder's name
    path: Path
    config: dict  # the run's resolved config as plain nested data; {} when it has none
    mode: str  # model.conditioning.mode
    seed: int | None
    series: dict[str, Series]  # metric -> step -> value
    fidelity: dict[str, float] | None = None  # flattened fidelity.json
    samples: list[Path] = field(default_factory=list)  # MIDI + PNG files under samples/


def _to_float(cell: object) -> float | None:
    """A CSV/JSON cell as a float; None for empty or unparsable cells (JSON null -> NaN)."""
    if cell is None or isinstance(cell, list):
        return None
    try:
        return float(cell)
    except (TypeError, ValueError):
        return None


def read_metrics(path: Path) -> dict[str, Series]:
    """A CSVLogger metrics.csv -> {metric: {step: value}}.

    Rows are sparse (train and val rows leave each other's cells empty): empty or unparsable cells and
    rows without a step are skipped, a metric missing from the header is simply absent, and a step
    logged twice (a resumed run) keeps its last value.
    """
    series: dict[str, Series] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            step = _to_float(row.get("step"))
            if step is None or not math.isfinite(step):
                continue
            for key, cell in row.items():
                value = _to_float(cell)
                if key in (None, "step", "epoch") or value is None:
                    continue
                series.setdefault(key, {})[int(step)] = value
    return {key: dict(sorted(s.items())) for key, s in series.items()}


def load_config(run_dir: Path) -> dict:
    """The run's config.yaml (Hydra's .hydra/config.yaml as a fallback) as plain nested data, or {}.

    Interpolations that only resolve inside Hydra (`${hydra:...}` in .hydra/config.yaml) stay as text.
    """
    for path in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml"):
        if not path.is_file():
            continue
        try:
            cfg = OmegaConf.load(path)
        except Exception as e:  # a broken YAML only costs the settings, which have fallbacks
            log.warning("%s: unreadable config (%s)", path, e)
            continue
        try:
            data = OmegaConf.to_container(cfg, resolve=True)
        except Exception:
            data = OmegaConf.to_container(cfg, resolve=False)
        return data if isinstance(data, dict) else {}
    return {}


def select(config: dict, key: str, default: object = None) -> object:
    """config[key] for a dotted key, or default when a part is missing."""
    node: object = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _mode_from_name(name: str) -> str | None:
    """A known mode named in a run folder's name (Hydra's subdir is `<num>_<mode>_seed<seed>`)."""
    for mode in sorted(MODE_ORDER, key=len, reverse=True):
        if re.search(rf"(?<![a-z]){mode}(?![a-z])", name.lower()):
            return mode
    return None


def mode_and_seed(run_dir: Path, config: dict) -> tuple[str, int | None]:
    """(conditioning mode, seed) of a run: from its config, else guessed from the folder's name."""
    mode = select(config, "model.conditioning.mode")
    if mode is None:
        mode = _mode_from_name(run_dir.name) or "unknown"
        log.warning("%s: no model.conditioning.mode in its config; taken as %r", run_dir, mode)
    seed = select(config, "seed")
    if seed is None:
        match = re.search(r"seed(\d+)", run_dir.name)
        seed = int(match.group(1)) if match else None
    return str(mode), (int(seed) if seed is not None else None)


def with_whole_pieces(fidelity: dict[str, float] | None, path: Path) -> dict[str, float] | None:
    """fidelity.json's keys with the whole-piece means of pieces.json where fidelity.json lacks them (a run
    trained before they were measured, re-evaluated since: evaluate.py fidelity=true out_dir=<run>)."""
    own = (fidelity or {}).get("piece_chroma")
    if not path.is_file() or (own is not None and math.isfinite(own)):  # read_fidelity gives NaN for a missing key
        return fidelity
    try:
        pieces = flat_summary(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s: unreadable (%s); whole-piece fidelity left out for this run", path, e)
        return fidelity
    return {**(fidelity or {}), **{k: _to_float(v) for k, v in pieces.items()}}


def read_fidelity(path: Path) -> dict[str, float] | None:
    """fidelity.json flattened to the `FIDELITY` keys (null/missing -> NaN); None if absent or broken."""
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable (%s); fidelity left out for this run", path, e)
        return None
    if not isinstance(raw, dict):
        log.warning("%s: not a JSON object; fidelity left out for this run", path)
        return None
    flat: dict[str, float | None] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            flat.update({f"{key}_{sub}": _to_float(v) for sub, v in value.items()})
        else:
            flat[key] = _to_float(value)
    return {key: math.nan if flat.get(key) is None else flat[key] for key, _ in FIDELITY}


def _sample_files(run_dir: Path) -> list[Path]:
    """The MIDI and piano-roll files under run_dir/samples/."""
    root = run_dir / "samples"
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES)


def read_run(run_dir: Path) -> Run | None:
    """One run folder -> Run; None (with a warning) when it has no readable metrics.csv."""
    metrics = run_dir / "metrics.csv"
    if not metrics.is_file():
        log.warning("%s: no metrics.csv, skipped (did the run crash before logging?)", run_dir)
        return None
    try:
        series = read_metrics(metrics)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        log.warning("%s: unreadable (%s), skipped", metrics, e)
        return None
    if "val/kl" not in series:
        log.warning("%s: no validation logged yet; its final values will be missing", metrics)
    config = load_config(run_dir)
    mode, seed = mode_and_seed(run_dir, config)
    fidelity = with_whole_pieces(read_fidelity(run_dir / "fidelity.json"), run_dir / "pieces.json")
    return Run(run_dir.name, run_dir, config, mode, seed, series, fidelity, _sample_files(run_dir))


def _looks_like_run(path: Path) -> bool:
    """A folder a training run wrote (its config, Hydra's .hydra/ or a metrics.csv)."""
    return any((path / name).exists() for name in ("metrics.csv", "config.yaml", ".hydra"))


def find_runs(sweep_dir: Path) -> tuple[list[Run], list[Path]]:
    """(runs, skipped run folders) of a sweep dir; UserError when there is no run to report on."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(
            f"{sweep_dir} is not a folder: pass the sweep dir of a comparison "
            "(`python scripts/train.py -m experiment=collapse_compare` writes multirun/<date>/)"
        )
    runs, skipped = [], []
    for sub in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        if sub.name.startswith(".") or sub.name == REPORT_DIRNAME or not _looks_like_run(sub):
            continue
        run = read_run(sub)
        if run is None:
            skipped.append(sub)
        else:
            runs.append(run)
    if not runs:
        hint = (
            f"{sweep_dir} looks like a single run; pass the folder that holds the runs"
            if (sweep_dir / "metrics.csv").is_file()
            else "pass the sweep dir whose subfolders are the runs (each with a metrics.csv), "
            "e.g. multirun/<date> after `python scripts/train.py -m experiment=collapse_compare`"
        )
        raise UserError(f"no run with a metrics.csv in {sweep_dir} ({len(skipped)} without one): {hint}")
    return runs, skipped


def metric_series(run: Run, key: str) -> Series:
    """A run's series of `key`, with the fallbacks of runs logged before val/rate and val/distortion:
    rate = val/kl; distortion = val/elbo - val/kl at the steps that have both (-ELBO = distortion + rate).
    """
    if key in run.series:
        return run.series[key]
    if key == "val/rate":
        return run.series.get("val/kl", {})
    if key == "val/distortion":
        elbo, kl = run.series.get("val/elbo", {}), run.series.get("val/kl", {})
        return {step: elbo[step] - kl[step] for step in elbo if step in kl}
    return {}
