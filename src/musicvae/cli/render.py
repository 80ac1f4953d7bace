"""Render MIDI files to audio.  musicvae-render PATH... [--format ogg|flac|wav] [--soundfont F.sf2]
(or python scripts/render.py ...)

Each PATH is a MIDI file or a folder (searched recursively); the audio goes beside each file (a.mid ->
a.ogg). Files already rendered are left alone unless --overwrite; a file that is not MIDI is counted and
named, and the others go on. See musicvae/generation/audio.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from musicvae.errors import exit_on_user_error
from musicvae.generation.audio import FORMATS, AudioConfig, midi_files, render_many


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    defaults = AudioConfig()
    parser = argparse.ArgumentParser(description="Render MIDI files (or folders of them) to audio beside them.")
    parser.add_argument("paths", nargs="+", type=Path, help="MIDI files or folders")
    parser.add_argument("--format", choices=FORMATS, default=defaults.format, help="ogg (Opus, small; the default), flac (lossless) or wav")
    parser.add_argument("--soundfont", default=defaults.soundfont, help="a .sf2 file (default: General MIDI bank)")
    parser.add_argument("--tail", type=float, default=defaults.tail, help="seconds of release after the last note")
    parser.add_argument("--overwrite", action="store_true", help="render files whose audio exists again")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = AudioConfig(format=args.format, soundfont=args.soundfont, tail=args.tail)
    summary = render_many(midi_files(args.paths), cfg, overwrite=args.overwrite)
    for path, why in summary.failed:
        print(f"skipped {path}: {why}", file=sys.stderr)
    print(f"audio: {summary.line()}")


if __name__ == "__main__":
    main()
