"""Audio benchmark: how fast MIDI becomes audio, in seconds of music per second of wall time.

    python scripts/benchmark.py audio [path=data/midi/bach] [files=40] [formats=ogg,flac,wav]

Renders the first `files` MIDI files under `path` (after `make demo` or `scripts/prepare_data.py`, the
Bach chorales) into a temporary folder, once per format, one file at a time in this process; prints per
format the median speed over files and the total (music seconds / wall seconds), and the bytes per second
of music.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from musicvae.errors import UserError
from musicvae.generation.audio import (
    FORMATS,
    AudioConfig,
    midi_files,
    midi_with_tail,
    render_file,
    soundfont_bytes,
)


def parse(overrides: list[str]) -> dict:
    options = {"path": "data/midi/bach", "files": "40", "formats": ",".join(FORMATS)}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in options:
            raise UserError(f"{item!r}: the audio benchmark takes {', '.join(f'{k}=' for k in options)}")
        options[key] = value
    return options


def main(config_dir: str, overrides: list[str]) -> None:
    options = parse(overrides)
    folder = Path(options["path"])
    if not folder.exists():
        raise UserError(f"{folder} does not exist: run `python scripts/prepare_data.py` (or make demo) first, or path=DIR")
    files = midi_files([folder])[: int(options["files"])]
    soundfont_bytes(None)  # read once, outside the timings
    table = Table(title=f"audio: {len(files)} MIDI files from {folder}")
    for column in ("format", "music s", "wall s", "total × real time", "median × real time", "kB per music s"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in options["formats"].split(","):
            cfg = AudioConfig(format=fmt)
            speeds, music, wall, size = [], 0.0, 0.0, 0
            for i, midi in enumerate(files):
                _, seconds = midi_with_tail(midi, cfg.tail)
                start = time.perf_counter()
                out = render_file(midi, cfg, Path(tmp) / f"{i}.{fmt}")
                took = time.perf_counter() - start
                speeds.append(seconds / took)
                music, wall, size = music + seconds, wall + took, size + out.stat().st_size
            table.add_row(fmt, f"{music:.0f}", f"{wall:.2f}", f"{music / wall:.1f}", f"{statistics.median(speeds):.1f}",
                          f"{size / music / 1000:.1f}")  # fmt: skip
    Console().print(table)
