"""Benchmarks run by scripts/benchmark.py (one function per subcommand)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from musicvae.errors import UserError


def size_from_overrides(cls, overrides: Sequence[str]) -> tuple[object, str]:
    """`key=value` arguments -> (an instance of the size dataclass `cls`, the device; `device=` or cpu)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values, device = {}, "cpu"
    for item in overrides:
        key, sep, value = item.partition("=")
        if key == "device":
            device = value
            continue
        if not sep or key not in fields:
            raise UserError(f"unknown benchmark setting {item!r}: use key=value with key one of {', '.join(fields)}")
        kind = type(fields[key].default)
        if kind is bool:
            if value.lower() not in ("true", "false"):
                raise UserError(f"benchmark setting {key}={value!r} must be true or false")
            values[key] = value.lower() == "true"
        else:
            values[key] = value if kind is str else kind(value)
    return cls(**values), device
