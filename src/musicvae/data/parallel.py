"""Worker processes that survive their work, and a progress bar: shared by the corpus export and the tokenizer.

`parallel_map(fn, items, workers, ...)` runs `fn` over `items` in worker processes under a small
supervisor in the calling process. A worker that dies (a segfault in a C library, `os._exit`, the OOM
killer) or is still busy with one item after `timeout_s` costs that item only: the supervisor hands
`on_failure(item, reason, detail)` back in its place (reason `worker_crash` or `timeout`; `error`
when `fn` raised), kills a hung worker, starts a fresh one and goes on with the rest.

Why not the standard pools: `multiprocessing.Pool` waits forever for the result of a task whose
worker died, and `concurrent.futures.ProcessPoolExecutor` marks itself broken when one worker dies,
failing every pending task; neither has a per-task time limit. `pebble` has all this, but the
supervisor is ~150 lines of standard library, so no new dependency.

Each worker holds one item at a time, so the supervisor always knows which item a dead or hung worker
had. The price is one pipe round trip per item (~0.1 ms), small next to reading and tokenizing a MIDI
file (milliseconds). Workers are forked where the platform allows it (spawned ones would re-import
miditok and torch, seconds each); since replacements may be forked while the progress bar is on
screen, the bar refreshes from the loop instead of from a thread of its own (forking while another
thread holds a lock copies the held lock into the child).
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Why an item has no result (passed to `on_failure`).
WORKER_CRASH, TIMEOUT, ERROR = "worker_crash", "timeout", "error"


class WorkerFailure(RuntimeError):
    """An item failed (`reason`: worker_crash | timeout | error) and the caller gave no `on_failure`."""

    def __init__(self, item: Any, reason: str, detail: str):
        super().__init__(f"{reason} on {item!r}: {detail}")
        self.item, self.reason, self.detail = item, reason, detail


def _start_method() -> str:
    return "fork" if "fork" in mp.get_all_start_methods() else "spawn"


def _exit_text(exitcode: int | None) -> str:
    """'exit code 3' | 'killed by SIGSEGV' (a negative exit code is the signal that ended the process)."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _worker_loop(
    conn: Connection,
    fn: Callable[[Any], Any],
    initializer: Callable[..., None] | None,
    initargs: tuple[Any, ...],
    inherited: list[Connection],
) -> None:
    """A worker: initialize, say 'ready', then answer (index, item) messages until None or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's: it stops the workers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a handler inherited from training must not outlive us
    for other in inherited:  # forked copies of the supervisor's pipe ends would hide its exit (no EOF)
        other.close()
    try:
        if initializer is not None:
            initializer(*initargs)
    except BaseException as e:
        conn.send(("init_failed", None, f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None, None))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the supervisor is gone
            return
        if task is None:
            return
        index, item = task
        try:
            message = ("done", index, fn(item))
        except Exception as e:
            message = ("failed", index, f"{type(e).__name__}: {str(e)[:200]}")
        try:
            conn.send(message)  # pickles first: an unpicklable result sends nothing and raises here
        except Exception as e:
            conn.send(("failed", index, f"result not sendable: {type(e).__name__}: {str(e)[:200]}"))


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection  # the supervisor's end of the worker's pipe
    ready: bool = False  # its initializer has run
    index: int | None = None  # the item it is working on
    deadline: float = math.inf  # time.monotonic() by which that item must be done


class _Supervisor(Generic[T, R]):
    """Keeps up to `workers` processes busy, one item each; see the module docstring."""

    def __init__(
        self,
        fn: Callable[[T], R],
        items: list[T],
        workers: int,
        initializer: Callable[..., None] | None,
        initargs: tuple[Any, ...],
        timeout_s: float | None,
        on_failure: Callable[[T, str, str], R] | None,
    ):
        self.fn, self.items, self.workers = fn, items, max(1, workers)
        self.initializer, self.initargs = initializer, initargs
        self.timeout_s, self.on_failure = timeout_s, on_failure
        self.context = mp.get_context(_start_method())
        self.pool: list[_Worker] = []
        self.retired: list[BaseProcess] = []  # told to stop; joined at close
        self.todo: deque[int] = deque(range(len(items)))
        self.replaced = 0  # workers lost to a crash or a time-out

    # -- workers -------------------------------------------------------------------------------

    def _start_worker(self) -> None:
        ours, theirs = self.context.Pipe(duplex=True)
        forked = self.context.get_start_method() == "fork"
        inherited = [w.conn for w in self.pool] + [ours] if forked else []
        process = self.context.Process(
            target=_worker_loop,
            args=(theirs, self.fn, self.initializer, self.initargs, inherited),
            name="musicvae-worker",
            daemon=True,  # never outlives the supervisor's process
        )
        process.start()
        theirs.close()  # only the worker holds its end now: its exit closes the pipe
        self.pool.append(_Worker(process, ours))

    def _remove(self, worker: _Worker, kill: bool) -> int | None:
        """Take `worker` out of the pool (killed first if asked): its exit code."""
        if kill:
            worker.process.kill()
        worker.process.join(timeout=5)
        if worker.process.is_alive():  # it closed its pipe but does not exit: no waiting on it
            worker.process.kill()
            worker.process.join()
        self.pool.remove(worker)
        worker.conn.close()
        return worker.process.exitcode

    def _give_work(self, worker: _Worker) -> None:
        """Send the next item to an idle worker, or tell it to stop when none is left."""
        if not self.todo:
            self.pool.remove(worker)
            try:
                worker.conn.send(None)
            except OSError:
                pass
            worker.conn.close()
            self.retired.append(worker.process)
            return
        index = self.todo.popleft()
        try:
            worker.conn.send((index, self.items[index]))
        except OSError:  # it died while idle: the item waits for another worker; its death is seen next
            self.todo.appendleft(index)
            return
        worker.index = index
        worker.deadline = time.monotonic() + self.timeout_s if self.timeout_s else math.inf

    def _failed(self, index: int, reason: str, detail: str) -> R:
        item = self.items[index]
        if reason != ERROR:
            log.warning("%s: %s (%s)", item, reason, detail)
        if self.on_failure is None:
            raise WorkerFailure(item, reason, detail)
        return self.on_failure(item, reason, detail)

    # -- the loop ------------------------------------------------------------------------------

    def _hear(self, worker: _Worker) -> tuple[bool, R | None]:
        """Handle a worker whose pipe or process became ready: (True, result) when an item is done.

        The result of an item that failed or was lost with its worker is `on_failure`'s.
        """
        try:
            kind, index, payload = worker.conn.recv() if worker.conn.poll() else (None, None, None)
        except (EOFError, OSError):  # its end of the pipe closed: it exited
            kind = index = payload = None
        if kind == "ready":
            worker.ready = True
            self._give_work(worker)
            return False, None
        if kind in ("done", "failed"):
            worker.index, worker.deadline = None, math.inf
            self._give_work(worker)
            return True, payload if kind == "done" else self._failed(index, ERROR, payload)
        if kind == "init_failed":
            raise RuntimeError(f"a worker process could not start: {payload}")
        # No message: the process has exited (a message sent just before is read first, above).
        lost, was_ready = worker.index, worker.ready
        exitcode = self._remove(worker, kill=False)
        if not was_ready:
            raise RuntimeError(f"a worker process died while starting ({_exit_text(exitcode)})")
        if lost is None:
            return False, None  # an idle worker was killed from outside: a fresh one takes its place
        self.replaced += 1
        return True, self._failed(lost, WORKER_CRASH, f"the worker process died ({_exit_text(exitcode)})")

    def _overdue(self) -> list[_Worker]:
        """Busy workers past their deadline (not those whose result is waiting in the pipe)."""
        now = time.monotonic()
        return [w for w in self.pool if w.deadline <= now and not w.conn.poll()]

    def results(self) -> Iterator[R]:
        unfinished = len(self.items)  # = items still to send + items held by workers
        while unfinished:
            while len(self.pool) < min(self.workers, unfinished):
                self._start_worker()
            deadline = min(w.deadline for w in self.pool)
            timeout = None if deadline == math.inf else max(0.0, deadline - time.monotonic())
            ready = set(wait([w.conn for w in self.pool] + [w.process.sentinel for w in self.pool], timeout))
            for worker in list(self.pool):
                if worker.conn in ready or worker.process.sentinel in ready:
                    finished, result = self._hear(worker)
                    if finished:
                        unfinished -= 1
                        yield result  # type: ignore[misc]
            for worker in self._overdue():
                index = worker.index
                self._remove(worker, kill=True)
                self.replaced += 1
                unfinished -= 1
                yield self._failed(index, TIMEOUT, f"still running after {self.timeout_s:g} s")  # type: ignore[arg-type]

    def close(self) -> None:
        """Stop every worker: busy ones are killed (an interrupted run), idle ones were told to stop."""
        for worker in list(self.pool):
            self._remove(worker, kill=True)
        for process in self.retired:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        if self.replaced:
            log.info("%d worker process(es) replaced after a crash or a time-out", self.replaced)


@contextmanager
def parallel_map(
    fn: Callable[[T], R],
    items: list[T],
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    timeout_s: float | None = None,
    on_failure: Callable[[T, str, str], R] | None = None,
) -> Iterator[Iterator[R]]:
    """Yield an iterator of fn(item) in completion order, from `workers` processes.

    An item whose worker crashed, that ran past `timeout_s` (None: no limit) or whose `fn` raised gives
    `on_failure(item, reason, detail)` instead (reason: worker_crash | timeout | error); without
    `on_failure` a `WorkerFailure` is raised. `fn`, `initializer` and items must be picklable where
    processes are spawned rather than forked. Leaving the block stops the workers.
    """
    supervisor = _Supervisor(fn, items, workers, initializer, initargs, timeout_s, on_failure)
    try:
        yield supervisor.results()
    finally:
        supervisor.close()


def track_progress(items: Iterable[T], total: int, description: str, enabled: bool = True) -> Iterator[T]:
    """Yield from `items`, advancing a bar of `total` steps on stderr; no bar when disabled or empty.

    The bar is redrawn from this loop (at most 10 times a second), not by rich's refresh thread: see
    the module docstring.
    """
    if not enabled or total == 0:
        yield from items
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), auto_refresh=False) as progress:
        task = progress.add_task(description, total=total)
        drawn = 0.0
        for item in items:
            yield item
            progress.advance(task)
            if time.monotonic() - drawn > 0.1:
                progress.refresh()
                drawn = time.monotonic()
