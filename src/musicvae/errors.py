"""User-facing errors: one clear message, no traceback.

Code raises `UserError` for anything the user can fix (a wrong path, an empty folder, a bad
checkpoint); the thin script wrappers catch it through `exit_on_user_error` and print only the message.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("musicvae")

F = TypeVar("F", bound=Callable)


class UserError(Exception):
    """A mistake in the user's input or config. The message names the file/key and what to do."""


class Interrupted(Exception):
    """A run stopped by a signal (SIGTERM: preemption) after saving a checkpoint to resume from."""

    exit_code = 143  # 128 + SIGTERM, what a scheduler expects of a terminated job


def exit_on_user_error(fn: F) -> F:
    """Decorate a script's entry point: a `UserError` prints `error: <message>` and exits with code 2;
    an `Interrupted` run prints `interrupted: <message>` and exits with code 143."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except Interrupted as e:
            print(f"interrupted: {e}", file=sys.stderr)
            sys.exit(Interrupted.exit_code)

    return wrapper  # type: ignore[return-value]
