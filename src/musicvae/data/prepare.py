"""`prepare_data(cfg)`: the job behind scripts/prepare_data.py: export, tokenize/cache, print a summary."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from musicvae.data.cache import PreparedCache, prepare_cache
from musicvae.data.cache_store import load_split
from musicvae.data.config import DataConfig
from musicvae.data.segments import SPLITS, check_compatible
from musicvae.tokens.attribute_classes import AttributeBins, latent_values
from musicvae.tokens.attributes import AttributeDefinitions, AttributeReader
from musicvae.tokens.tokenize import build_tokenizer

log = logging.getLogger(__name__)

CONDITIONING_ATTRIBUTES = ("rhythm", "polyphony")  # the attributes a model is conditioned on (MuseMorphose's)


def prepare_data(cfg: Any, console: Console | None = None) -> PreparedCache:
    """Build or load the cache for `cfg.data` + `cfg.tokenizer` and print its summary."""
    start = time.perf_counter()
    settings = DataConfig.from_cfg(cfg.data)
    tokenizer = build_tokenizer(cfg.tokenizer)
    check_compatible(tokenizer, settings)
    prepared = prepare_cache(settings, tokenizer)
    histogram = attribute_histogram(prepared, tokenizer, settings.attributes)
    print_summary(prepared, time.perf_counter() - start, console or Console(), histogram, settings.attributes)
    return prepared


def attribute_histogram(prepared: PreparedCache, tokenizer, definitions: AttributeDefinitions) -> dict[str, list[int]]:
    """Training bars per class of rhythm and polyphony (classes fitted on those bars, as training with
    model.attributes does; per-bar latents); {} for an empty training split."""
    arrays = load_split(prepared.path, "train")
    if len(arrays) == 0:
        return {}
    windows = (arrays.window(i) for i in range(len(arrays)))
    values = np.concatenate(latent_values(AttributeReader(tokenizer, definitions), windows, per_bar=True))
    if len(values) == 0:
        return {}
    counts = AttributeBins.fit(values, definitions).histogram(values)
    return {name: counts[name] for name in CONDITIONING_ATTRIBUTES}


def summary_table(prepared: PreparedCache, seconds: float) -> Table:
    """Files found/tokenized/skipped by reason, windows, segments and tokens per split, vocab, time."""
    m = prepared.manifest
    action = "built" if prepared.built else "loaded from cache"
    table = Table(
        title=f"data: {m['name']} ({action})", show_header=False, title_justify="left", box=box.SIMPLE
    )
    table.add_column(style="bold")
    table.add_column()
    if prepared.export is not None:
        e = prepared.export
        table.add_row(
            "corpus export", f"{e.total - len(e.failed)} of {e.total} MIDI files ({len(e.failed)} failed)"
        )
    table.add_row("files found", str(m["files"]["found"]))
    table.add_row("tokenized", str(m["files"]["tokenized"]))
    if m["files"].get("duplicates"):
        table.add_row("  same notes as another file", f"{m['files']['duplicates']} (kept, in that file's split)")
    table.add_row("skipped", str(m["files"]["skipped"]))
    for reason, n in m["skipped_by_reason"].items():
        table.add_row(f"  {reason}", str(n))
    w = m["windows"]
    table.add_row("windows", f"{w['total']} ({w['empty_dropped']} empty dropped)")
    table.add_row("over max_tokens", f"{w['overlong_truncated']} truncated, {w['overlong_dropped']} dropped")
    for split in SPLITS:
        s = m["splits"][split]
        table.add_row(
            split,
            f"{s['pieces']} pieces, {s['segments']} segments, {s['tokens']:,} tokens "
            f"({s['stored_tokens']:,} stored)",
        )
    table.add_row("vocab size", str(m["tokenizer"]["vocab_size"]))
    table.add_row("cache", str(prepared.path))
    if prepared.built:
        table.add_row("seconds", f"{seconds:.1f} (tokenizing {m['seconds']:.1f})")
    else:
        table.add_row("seconds", f"{seconds:.2f} (built in {m['seconds']:.1f} before)")
    return table


def histogram_rows(histogram: dict[str, list[int]], definitions: AttributeDefinitions) -> list[tuple[str, str]]:
    """Table rows of `attribute_histogram`: counts and the smallest class's share, EMPTY where one holds none."""
    rows = []
    for name, counts in histogram.items():
        total = max(1, sum(counts))
        note = "EMPTY class " + ", ".join(str(c) for c, n in enumerate(counts) if n == 0) if 0 in counts else \
            f"smallest {min(counts) / total:.1%}"  # fmt: skip
        rows.append((f"{name} classes ({getattr(definitions, name)})", f"{counts} train bars; {note}"))
    return rows


def print_summary(prepared: PreparedCache, seconds: float, console: Console, histogram: dict | None = None,
                  definitions: AttributeDefinitions | None = None) -> None:  # fmt: skip
    table = summary_table(prepared, seconds)
    for label, value in histogram_rows(histogram or {}, definitions or AttributeDefinitions()):
        table.add_row(label, value)
    console.print(table)
    empty = [name for name, counts in (histogram or {}).items() if 0 in counts]
    if empty:
        log.warning("%s: a class holds no training bar; training with model.attributes=[%s] will stop "
                    "(music whose texture varies: data=mixed)", ", ".join(empty), ", ".join(empty))  # fmt: skip
