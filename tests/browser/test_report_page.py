"""The report page in a real browser (headless Chromium): every player loads, every figure renders, and the audio
Chromium decodes is in tune (an A4/A3 file's peaks; each player's pitch classes against its MIDI).

`make test-browser` runs it (installing Chromium from the system packages where it is missing). It opens
the demo's report (outputs/demo/report/index.html after `make demo`; MUSICVAE_REPORT=path/to/index.html for
another) or, when there is none, a report it writes from two synthetic runs, and saves screenshots beside
the page: index.png (its top: the verdict), index_listen.png (the players).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from audio_checks import has_notes, pitch_class_profile, shift_correlations, strongest_frequency, synthesized

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]  # fmt: skip


def chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no chromium on PATH: `make test-browser` installs it (Debian: apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[browser]'")
    return path


DECODE_JS = """async (b64) => {  // Chromium's own decoder: the bytes -> mono samples at 48 kHz
    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
    const audio = await new OfflineAudioContext(1, 48000, 48000).decodeAudioData(bytes.buffer);
    return Array.from(audio.getChannelData(0)); }"""


def browser_decode(page, path: Path) -> np.ndarray:
    """(samples,) at 48 kHz: `path` decoded by the page's decodeAudioData (not by libsndfile, not by our code)."""
    import base64

    return np.asarray(page.evaluate(DECODE_JS, base64.b64encode(path.read_bytes()).decode()), dtype=np.float32)


def midi_seconds(src: str) -> float | None:
    """The length the audio at file URL `src` should have: its MIDI's end plus the default tail."""
    from urllib.parse import unquote, urlparse

    import pretty_midi

    from musicvae.generation.audio import AudioConfig

    midi = Path(unquote(urlparse(src).path)).with_suffix(".mid")
    return pretty_midi.PrettyMIDI(str(midi)).get_end_time() + AudioConfig().tail if midi.is_file() else None


@pytest.fixture
def report_page(tmp_path) -> Path:
    """The page to open: MUSICVAE_REPORT, the demo's, or one written now from synthetic runs with samples."""
    given = os.environ.get("MUSICVAE_REPORT")
    if given:
        return Path(given)
    demo = ROOT / "outputs" / "demo" / "report" / "index.html"
    if demo.is_file():
        return demo
    import pretty_midi

    from musicvae.report import write_report

    sweep = tmp_path / "sweep"
    for i, mode in enumerate(("in_attention", "none")):
        run = sweep / f"{i}_{mode}_seed0"
        (run / "samples").mkdir(parents=True)
        (run / "config.yaml").write_text(f"seed: 0\nmodel:\n  conditioning:\n    mode: {mode}\n")
        (run / "metrics.csv").write_text("epoch,step,val/kl,val/zgap,val/distortion\n0,9,2.0,0.1,50\n0,19,2.0,0.1,49\n")
        for kind in ("input", "reconstruct", "prior"):
            pm = pretty_midi.PrettyMIDI()
            pm.instruments.append(pretty_midi.Instrument(0))
            pm.instruments[0].notes += [pretty_midi.Note(90, 60 + k, 0.5 * k, 0.5 * k + 0.5) for k in range(4)]
            pm.write(str(run / "samples" / f"{kind}_000.mid"))
    return write_report(sweep) / "index.html"


def test_chromium_decodes_the_default_format_in_tune(tmp_path):
    """A4 for 2 s then A3 for 2 s, rendered in the default format and decoded by Chromium: 440 and 220 Hz."""
    import pretty_midi
    from playwright.sync_api import sync_playwright

    from musicvae.generation.audio import AudioConfig, render_file

    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(0))
    pm.instruments[0].notes += [pretty_midi.Note(100, 69, 0.0, 2.0), pretty_midi.Note(100, 57, 2.0, 4.0)]
    pm.write(str(tmp_path / "a4a3.mid"))
    audio = render_file(tmp_path / "a4a3.mid", AudioConfig())
    executable = chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto("about:blank")
            x = browser_decode(page, audio)
        finally:
            browser.close()
    rate = 48000
    assert len(x) / rate == pytest.approx(4.5, abs=0.02)
    assert strongest_frequency(x[: 2 * rate], rate) == pytest.approx(440.0, abs=2.0)
    assert strongest_frequency(x[2 * rate : 4 * rate], rate, lo=150.0) == pytest.approx(220.0, abs=2.0)


def test_every_player_loads_and_every_figure_renders(report_page):
    from playwright.sync_api import sync_playwright

    executable = chromium()
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(report_page.resolve().as_uri(), wait_until="load")
            n_audio = page.locator("audio").count()
            assert n_audio > 0, "the page has no player"
            # one player at a time (a page may hold more players than Chromium loads at once), 10 s each
            page.evaluate("""async () => { for (const a of document.querySelectorAll('audio')) {
                if (a.readyState >= 1) continue;
                await new Promise(done => { const t = setTimeout(done, 10000);
                    for (const e of ['loadedmetadata', 'error']) a.addEventListener(e, () => { clearTimeout(t); done(); });
                    a.preload = 'metadata'; a.load(); }); } }""")
            durations = page.evaluate("() => [...document.querySelectorAll('audio')].map(a => [a.src, a.duration])")
            bad = [(src, d) for src, d in durations if not (d and d > 0 and d != float("inf"))]
            assert not bad, f"{len(bad)} of {n_audio} players do not load: {bad[:3]}"
            wrong = [(src, d, expected) for src, d in durations if (expected := midi_seconds(src)) is not None
                     and abs(d - expected) > 0.1]  # fmt: skip
            assert not wrong, f"players whose length is not their MIDI's (+ tail): {wrong[:3]}"
            out_of_tune = []
            for src, _ in durations:  # each player's audio as Chromium decodes it, against the synthesizer's PCM
                from urllib.parse import unquote, urlparse

                audio = Path(unquote(urlparse(src).path))
                midi = audio.with_suffix(".mid")
                if midi.is_file() and has_notes(midi):
                    reference, rate = synthesized(midi)
                    r = shift_correlations(pitch_class_profile(browser_decode(page, audio), 48000),
                                           pitch_class_profile(reference, rate))  # fmt: skip
                    if int(np.argmax(r)) != 0 or r[0] <= 0.9:
                        out_of_tune.append((audio.name, round(r[0], 2), int(np.argmax(r))))
            assert not out_of_tune, f"players out of tune with their MIDI (name, r, best shift): {out_of_tune[:3]}"
            page.evaluate("() => Promise.all([...document.images].map(i => i.decode().catch(() => null)))")
            broken = page.evaluate("() => [...document.images].filter(i => !(i.naturalWidth > 0)).map(i => i.src)")
            assert not broken, f"figures that do not render: {broken[:3]}"
            page.screenshot(path=str(report_page.with_name("index.png")), full_page=False)  # the verdict
            page.evaluate("() => [...document.querySelectorAll('h2')].find(h => h.textContent === 'Listen').scrollIntoView()")
            page.screenshot(path=str(report_page.with_name("index_listen.png")), full_page=False)  # the players
        finally:
            browser.close()
    assert not errors, f"console errors: {errors[:3]}"
