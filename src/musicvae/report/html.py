"""report/index.html: summary.md as a page, and a player and piano roll for every sample of every group.

One file plus the media it links (the figures and samples/ beside it), opened from disk: no server, no
script, no network. The text is summary.md's (rendered with markdown-it), so the page and the Markdown never
disagree; the samples section becomes "Listen": per group, each test input beside its reconstruction, the
interpolation from input 0 to input 1 as a row of players, and the prior samples.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

from markdown_it import MarkdownIt

from musicvae.generation.audio import AUDIO_SUFFIXES

AUDIO_TYPES = {".ogg": "audio/ogg", ".wav": "audio/wav"}

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; }
code { background: #f5f5f5; padding: 0 3px; }
section.group { border-top: 2px solid #ddd; margin-top: 2em; }
.row { display: flex; gap: 12px; overflow-x: auto; padding-bottom: 6px; }
figure { margin: 0; flex: 0 0 auto; width: 360px; }
.path figure { width: 230px; }
figcaption { font-size: 13px; color: #555; }
audio { width: 100%; }
"""


def samples_by_stem(files: Sequence[Path]) -> dict[str, dict[str, Path]]:
    """{stem: {suffix: path}} of one group's copied samples, e.g. {"input_000": {".mid": ..., ".ogg": ...}}."""
    stems: dict[str, dict[str, Path]] = {}
    for f in files:
        stems.setdefault(f.stem, {})[f.suffix] = f
    return stems


def _figure(files: dict[str, Path] | None, caption: str) -> str:
    """A piano roll, a player and a link to the MIDI; '' when the sample is missing."""
    if not files:
        return ""
    parts = [f"<figcaption>{html.escape(caption)}</figcaption>"]
    if ".png" in files:
        parts.append(f'<img src="{files[".png"].as_posix()}" alt="piano roll: {html.escape(caption)}">')
    audio = next((files[s] for s in AUDIO_SUFFIXES if s in files), None)
    if audio is not None:
        parts.append(f'<audio controls preload="metadata" src="{audio.as_posix()}" type="{AUDIO_TYPES[audio.suffix]}"></audio>')
    if ".mid" in files:
        parts.append(f'<a href="{files[".mid"].as_posix()}">MIDI</a>')
    return "<figure>" + "".join(parts) + "</figure>"


def _numbered(stems: dict[str, dict[str, Path]], kind: str) -> list[tuple[int, dict[str, Path]]]:
    """(index, files) of the samples `kind`_NNN, by index."""
    found = [(int(m[1]), files) for stem, files in stems.items() if (m := re.fullmatch(rf"{kind}_(\d+)", stem))]
    return sorted(found, key=lambda x: x[0])


def group_section(label: str, run_name: str, files: Sequence[Path]) -> str:
    """One group's samples: input | reconstruction pairs, the interpolation path, the prior samples."""
    stems = samples_by_stem(files)
    out = [f'<section class="group"><h3>{html.escape(label)}</h3><p>Samples of run <code>{html.escape(run_name)}</code>.</p>']
    pairs = [
        f'<div class="row">{_figure(given, f"input {i} (test segment)")}'
        f'{_figure(stems.get(f"reconstruct_{i:03d}"), f"reconstruction {i} (z = μ)")}</div>'
        for i, given in _numbered(stems, "input")
    ]
    if pairs:
        out += ["<h4>Input and its reconstruction</h4>", *pairs]
    path = _numbered(stems, "interpolate")
    if path:
        last = max(len(path) - 1, 1)
        steps = [_figure(stems.get("input_000"), "input 0")]
        steps += [_figure(files, f"step {k}: α = {k / last:.2f}") for k, files in path]
        steps += [_figure(stems.get("input_001"), "input 1")]
        out += ["<h4>Interpolation: input 0 → input 1 (z slerped between their posterior means)</h4>",
                '<div class="row path">' + "".join(steps) + "</div>"]  # fmt: skip
    priors = _numbered(stems, "prior")
    if priors:
        out += ["<h4>Prior samples (z ~ N(0, I))</h4>",
                '<div class="row">' + "".join(_figure(f, f"prior sample {i}") for i, f in priors) + "</div>"]  # fmt: skip
    return "\n".join([*out, "</section>"])


def listen_section(copied: dict[str, tuple[str, list[Path]]]) -> str:
    if not copied:
        return "<h2>Listen</h2><p>No run has a samples/ folder.</p>"
    groups = "\n".join(group_section(label, run_name, files) for label, (run_name, files) in copied.items())
    return "<h2>Listen</h2>\n<p>The samples the end of each group's first run wrote (test inputs from the test split, " \
           "decoded with the run's fidelity settings), rendered with a General MIDI SoundFont.</p>\n" + groups


def page(markdown_text: str, copied: dict[str, tuple[str, list[Path]]], title: str) -> str:
    """The whole page: the Markdown (tables, figures, verdict) rendered, then the Listen section."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown_text)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}\n{listen_section(copied)}\n</body></html>\n"
    )


def write_html(report_dir: Path, markdown_text: str, copied: dict[str, tuple[str, list[Path]]], title: str) -> Path:
    """report_dir/index.html -> its path."""
    path = Path(report_dir) / "index.html"
    path.write_text(page(markdown_text, copied, title))
    return path
