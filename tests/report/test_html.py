"""report/index.html: the summary as a page, a player and a piano roll for every sample, nothing fetched."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pretty_midi

from musicvae.report import write_report


class Media(HTMLParser):
    """Every audio/img/a reference of a page, and its headings' text."""

    def __init__(self):
        super().__init__()
        self.audio, self.images, self.links, self.headings, self._in = [], [], [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        {"audio": self.audio, "img": self.images, "a": self.links}.get(tag, []).append(attrs.get("src") or attrs.get("href"))
        self._in = tag if tag in ("h2", "h3", "h4") else None

    def handle_data(self, data):
        if self._in:
            self.headings.append(data.strip())


def add_samples(run: Path, kinds: dict[str, int]) -> None:
    """Real MIDI samples (one note each, pitch by index) under run/samples/, as the end of a run writes them."""
    folder = run / "samples"
    folder.mkdir()
    for kind, n in kinds.items():
        for i in range(n):
            pm = pretty_midi.PrettyMIDI()
            pm.instruments.append(pretty_midi.Instrument(0))
            pm.instruments[0].notes.append(pretty_midi.Note(90, 60 + i, 0.0, 0.5 + 0.25 * i))
            pm.write(str(folder / f"{kind}_{i:03d}.mid"))


def test_index_html_plays_every_sample_of_every_group(sweep):
    run_in = sweep.run("in_attention", 0, sweep.healthy())
    run_none = sweep.run("none", 0, sweep.healthy(zgap=0.0, kl=0.0))
    add_samples(run_in, {"input": 2, "reconstruct": 2, "interpolate": 3, "prior": 2})
    add_samples(run_none, {"prior": 1})

    report = write_report(sweep.path)
    page = (report / "index.html").read_text()
    media = Media()
    media.feed(page)
    assert len(media.audio) == 2 + 2 + 3 + 2 + 2 + 1  # interpolation row: input 0, 3 steps, input 1
    for ref in media.audio + media.images + media.links:
        assert not re.match(r"[a-z]+://", ref), f"{ref}: the page must open from disk, no network"
        assert (report / ref).is_file(), f"{ref} is linked but missing"
    assert all(ref.endswith(".ogg") for ref in media.audio)
    assert {"kl_curves.png", "rate_distortion.png"} <= set(media.images)  # the figures of summary.md
    assert "At a glance" in media.headings and "Verdict" in media.headings and "Listen" in media.headings
    assert media.headings.count("Interpolation: input 0 → input 1 (z slerped between their posterior means)") == 1
    assert "Samples" not in media.headings  # the page plays them instead of listing them
    assert "<table>" in page and "plateaued" in page  # the summary tables, rendered
    md = (report / "summary.md").read_text()
    assert "[ogg](samples/in_attention/prior_000.ogg)" in md  # summary.md lists the audio too


def test_no_audio_when_asked(sweep):
    add_samples(sweep.run("in_attention", 0, sweep.healthy()), {"prior": 1})
    report = write_report(sweep.path, audio=False)
    assert not list(report.glob("samples/*/*.ogg"))
    assert "<audio" not in (report / "index.html").read_text()
