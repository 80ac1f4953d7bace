"""Benchmarks run by scripts/benchmark.py (one function per subcommand)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from musicvae.errors import UserError
from musicvae.models.encoder import LATENTS

BAR_ID = 4  # the synthetic vocabulary's Bar token (latent=bar); ids 0-2 are PAD, BOS, EOS


def check_latent_settings(latent: str, bars: int, vocab_size: int) -> None:
    """A benchmark size's latent, bars and vocab_size: UserError naming the setting."""
    if latent not in LATENTS:
        raise UserError(f"benchmark setting latent={latent!r} must be one of {', '.join(LATENTS)}")
    if latent != "bar":
        return
    if bars < 1:
        raise UserError(f"benchmark setting bars={bars} must be at least 1")
    if vocab_size <= BAR_ID + 1:
        raise UserError(f"benchmark setting vocab_size={vocab_size} must exceed {BAR_ID + 1} with latent=bar")


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
