"""Worker processes and a progress bar, shared by the corpus export and the tokenizer.

The pool is started before the progress bar: forking while rich's refresh thread runs could copy a
held lock into a worker. Workers are forked where the platform allows it; spawned ones would
re-import miditok and torch (seconds each).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")
R = TypeVar("R")


def _start_method() -> str:
    return "fork" if "fork" in mp.get_all_start_methods() else "spawn"


@contextmanager
def parallel_map(
    fn: Callable[[T], R],
    items: list[T],
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[Iterator[R]]:
    """Yield an iterator of fn(item) in completion order, from `workers` processes (1: in-process)."""
    if workers <= 1 or len(items) <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield map(fn, items)
        return
    context = mp.get_context(_start_method())
    with context.Pool(min(workers, len(items)), initializer=initializer, initargs=initargs) as pool:
        chunksize = max(1, min(8, len(items) // (4 * workers)))
        yield pool.imap_unordered(fn, items, chunksize=chunksize)


def track_progress(items: Iterable[T], total: int, description: str, enabled: bool = True) -> Iterator[T]:
    """Yield from `items`, advancing a bar of `total` steps on stderr; no bar when disabled or empty."""
    if not enabled or total == 0:
        yield from items
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
