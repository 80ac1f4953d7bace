"""parallel_map: every item comes back once, whatever a worker does (crash, segfault, hang, raise)."""

import ctypes
import faulthandler
import multiprocessing as mp
import os
import time

import pytest

from musicvae.data.parallel import TIMEOUT, WORKER_CRASH, WorkerFailure, parallel_map

pytestmark = pytest.mark.skipif(
    "fork" not in mp.get_all_start_methods(), reason="the injected faults are module functions seen by forked workers"
)


def square(x: int) -> int:
    return x * x


def misbehave(x: int) -> int:
    """Item 3 exits its process, 5 hangs, 7 segfaults (as a C library can), 9 raises; others square."""
    if x == 3:
        os._exit(7)
    if x == 5:
        time.sleep(600)
    if x == 7:
        faulthandler.disable()  # pytest's would print the worker's stack to the test output
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    if x == 9:
        raise ValueError("nine")
    return x * x


def as_failure(item, reason, detail):
    return ("failed", item, reason, detail)


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_every_item_once(workers):
    with parallel_map(square, list(range(23)), workers) as results:
        assert sorted(results) == [x * x for x in range(23)]
    assert mp.active_children() == []


@pytest.mark.parametrize("workers", [1, 2])
def test_crashes_and_hangs_cost_their_item_only(workers):
    start = time.monotonic()
    with parallel_map(misbehave, list(range(12)), workers, timeout_s=1.5, on_failure=as_failure) as results:
        results = list(results)
    assert time.monotonic() - start < 60  # the hung item was given up on, not waited for
    failures = {r[1]: r[2:] for r in results if isinstance(r, tuple)}
    assert {item: reason for item, (reason, _) in failures.items()} == {
        3: WORKER_CRASH,
        5: TIMEOUT,
        7: WORKER_CRASH,
        9: "error",
    }
    assert "exit code 7" in failures[3][1] and "SIGSEGV" in failures[7][1] and "ValueError: nine" in failures[9][1]
    assert sorted(r for r in results if not isinstance(r, tuple)) == [x * x for x in range(12) if x not in failures]
    assert mp.active_children() == []  # the hung worker was killed, the crashed ones reaped


def test_without_on_failure_a_failure_raises():
    with pytest.raises(WorkerFailure, match="worker_crash on 3"):
        with parallel_map(misbehave, [1, 2, 3, 4], 1) as results:
            list(results)
    assert mp.active_children() == []


def fail_to_start() -> None:
    raise OSError("no tokenizer here")


def test_a_failing_initializer_is_an_error_not_a_loop():
    with pytest.raises(RuntimeError, match="could not start: OSError: no tokenizer here"):
        with parallel_map(square, [1, 2, 3], 2, initializer=fail_to_start) as results:
            list(results)
    assert mp.active_children() == []


def test_leaving_early_stops_the_workers():
    with parallel_map(misbehave, [1, 5, 5, 2], 2, timeout_s=300) as results:  # then both workers hang
        next(iter(results))
    assert mp.active_children() == []
