"""Token ids to MIDI files, piano-roll PNGs and audio (sampling, evaluation and the media logged while training
write their samples through `write_sample`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi

from musicvae.generation.audio import AudioConfig, render_quietly
from musicvae.tokens.tokenize import tokens_to_midi


def score_to_pretty_midi(score) -> pretty_midi.PrettyMIDI:
    """A symusic Score as PrettyMIDI, built note by note in seconds.

    Not through `score.dumps_midi()`: symusic 0.6 writes time-signature and tempo events unmerged, so a
    time-signature change after tick 0 gives a negative delta that wraps around (pretty_midi then
    rejects the file as corrupt). Generated tokens put TimeSig changes anywhere.
    """
    sec = score.to("second")
    qpm = float(score.tempos[0].qpm) if len(score.tempos) else 120.0
    pm = pretty_midi.PrettyMIDI(initial_tempo=qpm)
    for ts in sec.time_signatures:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(int(ts.numerator), int(ts.denominator), float(ts.time)))
    for track in sec.tracks:
        inst = pretty_midi.Instrument(program=int(track.program), is_drum=bool(track.is_drum), name=track.name)
        for n in track.notes:
            end = float(n.time + max(n.duration, 1e-3))
            inst.notes.append(pretty_midi.Note(int(n.velocity), int(n.pitch), float(n.time), end))
        pm.instruments.append(inst)
    return pm


def tokens_to_pretty_midi(tokenizer, ids: list[int]) -> tuple[pretty_midi.PrettyMIDI, int]:
    """Decode token ids (malformed events dropped) -> (PrettyMIDI, tokens dropped)."""
    score, dropped = tokens_to_midi(tokenizer, ids)
    return score_to_pretty_midi(score), dropped


def write_sample(
    pm: pretty_midi.PrettyMIDI, midi_path: Path, title: str | None = None, audio: AudioConfig | None = None
) -> Path | None:  # fmt: skip
    """`pm` as a MIDI file, its piano roll beside it (titled `title`; none when None) and its audio (unless
    `audio` is None) -> the audio's path (None without audio, or when rendering failed: a warning)."""
    pm.write(str(midi_path))
    if title is not None:
        piano_roll_png(pm, Path(midi_path).with_suffix(".png"), title=title)
    return render_quietly(Path(midi_path), audio)


def write_midi(tokenizer, ids: list[int], path: Path) -> tuple[pretty_midi.PrettyMIDI, int]:
    """Decode token ids to `path` (always a valid MIDI file). Returns it as PrettyMIDI and the tokens dropped."""
    pm, dropped = tokens_to_pretty_midi(tokenizer, ids)
    write_sample(pm, path)
    return pm, dropped


def piano_roll_png(pm: pretty_midi.PrettyMIDI, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    _draw_roll(ax, pm, title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def grid_png(pms: list[pretty_midi.PrettyMIDI], path: Path, titles: list[str]) -> None:
    """Piano rolls stacked in one figure, one per title, on shared time and pitch axes (to compare them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(pms), 1, figsize=(8, 1.8 * len(pms)), squeeze=False, sharex=True, sharey=True)
    for ax, pm, title in zip(axes[:, 0], pms, titles, strict=True):
        _draw_roll(ax, pm, title)
        ax.label_outer()  # the shared time axis is labelled once, at the bottom
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _draw_roll(ax, pm: pretty_midi.PrettyMIDI, title: str, fs: int = 16) -> None:
    roll = pm.get_piano_roll(fs=fs) if pm.instruments else np.zeros((128, 1))
    pitches = np.nonzero(roll.sum(1))[0]
    lo, hi = (pitches.min() - 2, pitches.max() + 3) if len(pitches) else (48, 72)
    ax.imshow(roll[lo:hi] > 0, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest",
              extent=(0, roll.shape[1] / fs, lo, hi))  # fmt: skip
    for t in pm.get_downbeats():
        ax.axvline(t, color="tab:blue", lw=0.5, alpha=0.5)
    ax.set_ylabel("pitch")
    ax.set_xlabel("seconds")
    ax.set_title(title, fontsize=9)
