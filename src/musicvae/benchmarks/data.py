"""Data benchmark: tokenizing files/s with 1 worker and with all workers, cached load vs tokenizing.

    python scripts/benchmark.py data [hydra overrides, e.g. data=folk data.limit_files=200]

Everything is measured in one run on the real corpus (exported first if needed), best of two tries
each, into a temporary cache folder so the real cache is left alone. Tokenizing includes reading the
MIDI files and writing the cache.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from rich import box
from rich.console import Console
from rich.table import Table

from musicvae.data.cache import build_cache, load_split, prepare_cache
from musicvae.data.config import DataConfig
from musicvae.data.corpus import export_corpus
from musicvae.data.datamodule import MidiDataModule
from musicvae.data.segments import SPLITS
from musicvae.data.tokenize import build_tokenizer


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
    config_dir: str, overrides: Sequence[str], console: Console | None = None, repeats: int = 2
) -> dict:
    """Measure (best of `repeats` runs each) and print; returns the figures."""
    console = console or Console()
    cfg = compose_config(config_dir, overrides)
    settings = DataConfig.from_cfg(cfg.data)
    tokenizer = build_tokenizer(cfg.tokenizer)
    if settings.corpus:
        export_corpus(settings.corpus, settings.source_dir, settings.num_workers)
    all_workers = settings.num_workers
    with tempfile.TemporaryDirectory(prefix="musicvae-bench-") as tmp:
        one = replace(settings, workers=1, cache_dir=f"{tmp}/one")
        many = replace(settings, workers=all_workers, cache_dir=f"{tmp}/many")
        t_one, built = _timed(build_cache, one, tokenizer, progress=False, repeats=repeats)
        t_many, _ = _timed(build_cache, many, tokenizer, progress=False, repeats=repeats)
        t_load, _ = _timed(_load_cached, many, tokenizer, repeats=repeats)
        t_epoch, batches = _timed(_epoch, many, cfg.tokenizer, repeats=repeats)
    files = built.manifest["files"]["found"]  # type: ignore[attr-defined]
    figures = {
        "files": files,
        "workers": all_workers,
        "files_per_s_1": files / t_one,
        "files_per_s_all": files / t_many,
        "speedup": t_one / t_many,
        "tokenize_s": t_many,
        "cached_load_s": t_load,
        "load_vs_tokenize": t_many / t_load,
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
        f"tokenize, {f['workers']} workers", f"{f['files_per_s_all']:.1f} files/s ({f['speedup']:.2f}x)"
    )
    table.add_row(
        "cached load",
        f"{f['cached_load_s'] * 1000:.1f} ms ({f['load_vs_tokenize']:.0f}x faster than tokenizing)",
    )
    table.add_row("train epoch", f"{f['train_batches']} batches in {f['train_epoch_s']:.2f} s")
    return table
