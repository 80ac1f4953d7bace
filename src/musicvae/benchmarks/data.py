"""Data benchmark: tokenizing files/s with 1 worker and with all workers, peak memory of a build,
cached load vs tokenizing, one training epoch.

    python scripts/benchmark.py data [hydra overrides, e.g. data=folk data.limit_files=200]
    python scripts/benchmark.py data synthetic=20000 [synthetic_dir=/some/folder] [repeats=1]

Everything is measured in one run, best of `repeats` tries each (default 2; 1 with `synthetic`), into
a temporary cache folder so the real cache is left alone. Tokenizing includes reading the MIDI files
and writing the cache. Each build runs in a freshly spawned process, so its peak resident memory
(`getrusage` maxrss) is the build's own: the build process and its largest tokenizing worker are
reported apart, and the build process's memory once its imports are done, for scale.

`synthetic=N` benchmarks on N small seeded MIDI files (varied lengths, metres and instruments, one in
50 a copy of the one before: tunebooks share tunes) written into `synthetic_dir`, reused when it
already holds them, or into a temporary folder deleted afterwards.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import multiprocessing as mp
import random
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from rich import box
from rich.console import Console
from rich.table import Table

from musicvae.data.cache import build_cache, prepare_cache
from musicvae.data.cache_store import load_split
from musicvae.data.config import DataConfig
from musicvae.data.corpus import export_corpus
from musicvae.data.datamodule import MidiDataModule
from musicvae.data.segments import SPLITS
from musicvae.errors import UserError
from musicvae.tokens.tokenize import build_tokenizer, tokenizer_from_dict, tokenizer_to_dict

log = logging.getLogger(__name__)

SYNTHETIC_MARKER = ".synthetic.json"
SYNTHETIC_VERSION = 1  # bump when the generated files change


@dataclass(frozen=True)
class DataBenchOptions:
    """Benchmark settings given as `key=value` next to the Hydra overrides."""

    synthetic: int = 0  # >0: benchmark on this many synthetic MIDI files instead of the configured data
    synthetic_dir: str = ""  # where to write (or find) them; "": a temporary folder
    repeats: int = 0  # best of this many builds; 0: 2, or 1 with synthetic

    @classmethod
    def split_args(cls, args: Sequence[str]) -> tuple[DataBenchOptions, list[str]]:
        """(our options, the remaining Hydra overrides)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values, overrides = {}, []
        for arg in args:
            key, sep, value = arg.partition("=")
            if not sep or key not in fields:
                overrides.append(arg)
                continue
            try:
                values[key] = value if key == "synthetic_dir" else int(value)
            except ValueError:
                raise UserError(f"{key} must be an integer (got {value!r})") from None
        options = cls(**values)
        if options.synthetic < 0 or options.repeats < 0:
            raise UserError("synthetic and repeats must be >= 0")
        return options, overrides

    @property
    def tries(self) -> int:
        return self.repeats or (1 if self.synthetic else 2)


# ---------------------------------------------------------------------------------------------
# A synthetic corpus


def synthetic_piece(index: int, seed: int = 0):
    """A seeded symusic Score: 4-48 bars in 3/4 or 4/4, 1-3 instruments, notes of 1/2 to 2 beats.

    Every 50th piece (index % 50 == 49) has the notes of the one before it, under another tempo and
    instrument: the same tune in two files.
    """
    from symusic import Note, Score, Tempo, TimeSignature, Track

    copy = index % 50 == 49
    rng = random.Random(seed * 1_000_003 + index - copy)
    tpq = 480
    numerator = rng.choice((3, 4, 4))
    bars = rng.choice((4, 8, 8, 12, 16, 16, 24, 32, 48))
    score = Score(tpq)
    score.tempos.append(Tempo(0, qpm=rng.choice((90.0, 120.0, 140.0)) + 7.0 * copy))
    score.time_signatures.append(TimeSignature(0, numerator, 4))
    for voice in range(rng.choice((1, 1, 2, 3))):
        track = Track(program=(rng.randrange(0, 96) + 13 * copy) % 96, name=f"voice{voice}")
        pitch, tick, end = 48 + 12 * voice + rng.randrange(12), 0, bars * numerator * tpq
        while tick < end:
            length = rng.choice((tpq // 2, tpq, tpq, 2 * tpq))
            if rng.random() > 0.15:  # a rest now and then
                pitch = min(max(pitch + rng.randint(-4, 4), 36), 96)
                track.notes.append(Note(tick, min(length, end - tick), pitch, rng.choice((64, 80, 96))))
            tick += length
        score.tracks.append(track)
    return score


def _write_synthetic(job: tuple[int, int, str]) -> None:
    index, seed, path = job
    synthetic_piece(index, seed).dump_midi(path)


def write_synthetic_corpus(folder: Path, count: int, seed: int = 0, workers: int = 1) -> Path:
    """`count` synthetic MIDI files in `folder` (1,000 per subfolder); reused when already written."""
    marker = folder / SYNTHETIC_MARKER
    wanted = {"count": count, "seed": seed, "version": SYNTHETIC_VERSION}
    try:
        if json.loads(marker.read_text()) == wanted:
            log.info("using the %d synthetic MIDI files in %s", count, folder)
            return folder
    except (OSError, ValueError):
        pass
    if folder.exists() and any(folder.iterdir()):
        marker.unlink(missing_ok=True)
        for old in folder.rglob("*.mid"):  # another count or version: start over
            old.unlink()
    start = time.perf_counter()
    jobs = []
    for index in range(count):
        path = folder / f"{index // 1000:03d}" / f"{index:06d}.mid"
        path.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((index, seed, str(path)))
    from musicvae.data.parallel import parallel_map  # the same supervised workers as the tokenizer

    with parallel_map(_write_synthetic, jobs, workers) as results:
        for _ in results:
            pass
    marker.write_text(json.dumps(wanted))
    log.info("wrote %d synthetic MIDI files to %s in %.1f s", count, folder, time.perf_counter() - start)
    return folder


# ---------------------------------------------------------------------------------------------
# Measuring


def compose_config(config_dir: str, overrides: Sequence[str]) -> DictConfig:
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        return compose(config_name="prepare_data", overrides=list(overrides))


def _timed(fn, *args, repeats: int = 1, **kwargs) -> tuple[float, object]:
    """(best wall time of `repeats` calls, the last result)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, result


def _maxrss_mib(who: int) -> float:
    """Peak resident memory (getrusage maxrss: KiB on Linux, bytes on macOS) in MiB."""
    return resource.getrusage(who).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def _build_here(settings: DataConfig, tokenizer_params: dict) -> dict:
    """Build the cache in this process (a fresh one): seconds, manifest, peak memory."""
    tokenizer = tokenizer_from_dict(tokenizer_params)
    imported = _maxrss_mib(resource.RUSAGE_SELF)
    start = time.perf_counter()
    prepared = build_cache(settings, tokenizer, progress=False)
    return {
        "seconds": time.perf_counter() - start,
        "manifest": prepared.manifest,
        "rss_imported_mib": imported,
        "rss_build_mib": _maxrss_mib(resource.RUSAGE_SELF),
        "rss_worker_mib": _maxrss_mib(resource.RUSAGE_CHILDREN),  # the largest tokenizing worker
    }


def _build_measured(settings: DataConfig, tokenizer, repeats: int) -> dict:
    """The best of `repeats` builds, each in a freshly spawned process (its peak memory is the build's)."""
    best: dict | None = None
    for _ in range(repeats):
        context = mp.get_context("spawn")  # a fork would start from this process's memory
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            run = pool.submit(_build_here, settings, tokenizer_to_dict(tokenizer)).result()
        if best is None or run["seconds"] < best["seconds"]:
            best = run
    return best  # type: ignore[return-value]


def _load_cached(settings: DataConfig, tokenizer) -> int:
    """The cached path: find the cache, check it is current, read every split into memory (tokens)."""
    prepared = prepare_cache(settings, tokenizer, progress=False)
    return sum(len(np.array(load_split(prepared.path, split).tokens)) for split in SPLITS)


def _epoch(settings: DataConfig, tokenizer_cfg) -> int:
    """One pass over the train DataLoader (transposition on); returns the number of batches."""
    dm = MidiDataModule(settings, tokenizer_cfg)
    dm.setup("fit")
    return sum(1 for _ in dm.train_dataloader())


def run_data_benchmark(
    config_dir: str, args: Sequence[str], console: Console | None = None, repeats: int | None = None
) -> dict:
    """Measure and print; returns the figures. `args`: our key=value options and Hydra overrides."""
    options, overrides = DataBenchOptions.split_args(args)
    if repeats is not None:
        options = replace(options, repeats=repeats)
    console = console or Console()
    with tempfile.TemporaryDirectory(prefix="musicvae-bench-") as tmp:
        if options.synthetic:
            folder = Path(options.synthetic_dir).expanduser() if options.synthetic_dir else Path(tmp) / "midi"
            workers = DataConfig.from_cfg(compose_config(config_dir, overrides).data).num_workers
            write_synthetic_corpus(folder, options.synthetic, workers=workers)
            overrides = ["data=midi_dir", f"data.path={folder}", "data.name=synthetic", *overrides]
        return _measure(config_dir, overrides, options.tries, Path(tmp), console)


def _measure(config_dir: str, overrides: Sequence[str], repeats: int, tmp: Path, console: Console) -> dict:
    cfg = compose_config(config_dir, overrides)
    settings = DataConfig.from_cfg(cfg.data)
    tokenizer = build_tokenizer(cfg.tokenizer)
    if settings.corpus:
        export_corpus(settings.corpus, settings.source_dir, settings.num_workers)
    all_workers = settings.num_workers
    one = replace(settings, workers=1, cache_dir=str(tmp / "one"))
    many = replace(settings, workers=all_workers, cache_dir=str(tmp / "many"))
    single = _build_measured(one, tokenizer, repeats)
    built = _build_measured(many, tokenizer, repeats)
    t_load, _ = _timed(_load_cached, many, tokenizer, repeats=repeats)
    t_epoch, batches = _timed(_epoch, many, cfg.tokenizer, repeats=repeats)
    manifest = built["manifest"]
    files = manifest["files"]["found"]
    splits = manifest["splits"]
    figures = {
        "files": files,
        "segments": sum(s["segments"] for s in splits.values()),
        "stored_tokens": sum(s["stored_tokens"] for s in splits.values()),
        "window_tokens": sum(s["tokens"] for s in splits.values()),
        "workers": all_workers,
        "files_per_s_1": files / single["seconds"],
        "files_per_s_all": files / built["seconds"],
        "speedup": single["seconds"] / built["seconds"],
        "tokenize_s": built["seconds"],
        "rss_imported_mib": built["rss_imported_mib"],
        "rss_build_mib": built["rss_build_mib"],
        "rss_worker_mib": built["rss_worker_mib"],
        "rss_build_1_mib": single["rss_build_mib"],
        "cached_load_s": t_load,
        "load_vs_tokenize": built["seconds"] / t_load,
        "train_epoch_s": t_epoch,
        "train_batches": batches,
    }
    console.print(_table(settings.name, figures))
    return figures


def _table(name: str, f: dict) -> Table:
    table = Table(
        title=f"data benchmark: {name}, {f['files']} files",
        show_header=False,
        box=box.SIMPLE,
        title_justify="left",
    )
    table.add_column(style="bold")
    table.add_column()
    table.add_row("tokenize, 1 worker", f"{f['files_per_s_1']:.1f} files/s")
    table.add_row(
        f"tokenize, {f['workers']} workers",
        f"{f['files_per_s_all']:.1f} files/s ({f['speedup']:.2f}x), {f['tokenize_s']:.1f} s",
    )
    table.add_row(
        "peak RSS of the build",
        f"{f['rss_build_mib']:.0f} MiB ({f['rss_imported_mib']:.0f} MiB after imports; 1 worker: "
        f"{f['rss_build_1_mib']:.0f} MiB), largest worker {f['rss_worker_mib']:.0f} MiB",
    )
    table.add_row(
        "cache",
        f"{f['segments']:,} segments, {f['window_tokens']:,} tokens, {f['stored_tokens']:,} stored",
    )
    table.add_row(
        "cached load",
        f"{f['cached_load_s'] * 1000:.1f} ms ({f['load_vs_tokenize']:.0f}x faster than tokenizing)",
    )
    table.add_row("train epoch", f"{f['train_batches']} batches in {f['train_epoch_s']:.2f} s")
    return table
