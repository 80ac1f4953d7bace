"""Musical fidelity and statistics of MIDI (`pretty_midi.PrettyMIDI`), numpy only.

Bars come from the MIDI's own downbeats (`pm.get_downbeats()`: its time signatures and tempo changes),
falling back to 4/4 at the MIDI's first tempo (120 qpm if it has none) when there are no downbeats.
A piece has as many bars as start before its last note ends, so trailing meta events add no empty bars.

Pitch-based figures (chroma, pitch-class entropy) skip drum tracks, whose "pitches" name instruments;
rhythm-based ones (groove, note density) count every note, drums included.

Similarities follow MuseMorphose / FIGARO: the mean over bars, aligned by index up to the longer piece,
of the cosine similarity of per-bar vectors; a bar empty in both is skipped, a bar empty in only one
scores 0, and two pieces with no non-empty bar give nan (callers average with `np.nanmean`).
"""

from __future__ import annotations

import math

import numpy as np
import pretty_midi

# Slack for times that should coincide but went through MIDI ticks and float seconds.
_TOL = 1e-6
# A note must sound this long (seconds) into a bar for that bar to count as part of the piece.
_END_TOL = 1e-3


def _notes(pm: pretty_midi.PrettyMIDI, drums: bool) -> list[pretty_midi.Note]:
    return [n for inst in pm.instruments if drums or not inst.is_drum for n in inst.notes]


def _qpm_at(pm: pretty_midi.PrettyMIDI, t: float) -> float:
    times, tempi = pm.get_tempo_changes()
    if len(tempi) == 0:
        return 120.0
    i = max(0, int(np.searchsorted(times, t + _TOL, side="right")) - 1)
    return float(tempi[i])


def _bar_seconds_at(pm: pretty_midi.PrettyMIDI, t: float) -> float:
    """Length in seconds of a bar starting at t, from the meter and tempo in force there."""
    num, den = 4, 4
    for ts in sorted(pm.time_signature_changes, key=lambda ts: ts.time):
        if ts.time <= t + _TOL:
            num, den = ts.numerator, ts.denominator
    return num * 4.0 / den * 60.0 / _qpm_at(pm, t)


def bar_edges(pm: pretty_midi.PrettyMIDI) -> np.ndarray:
    """Bar boundaries in seconds → ndarray [n_bars + 1] (bar k spans [edges[k], edges[k+1])).

    n_bars = 0 for a MIDI without notes.
    """
    notes = _notes(pm, drums=True)
    if not notes:
        return np.zeros(1)
    last_end = max(max(n.end for n in notes), max(n.start for n in notes))
    downbeats = np.asarray(pm.get_downbeats(), dtype=float)
    if downbeats.size == 0:
        bar = 4 * 60.0 / _qpm_at(pm, 0.0)
        n_bars = max(1, math.ceil((last_end - _END_TOL) / bar))
        return np.arange(n_bars + 1) * bar
    # get_downbeats stops at the last event; the final bar's end comes from the meter/tempo there.
    edges = np.append(downbeats, downbeats[-1] + _bar_seconds_at(pm, float(downbeats[-1])))
    n_bars = max(1, int(np.sum(downbeats < last_end - _END_TOL)))
    return edges[: n_bars + 1]


def bar_chroma(pm: pretty_midi.PrettyMIDI) -> np.ndarray:
    """Per bar, the 12-bin pitch-class vector weighted by each note's duration inside the bar.

    → ndarray [n_bars, 12] (seconds of sounding per pitch class); drum tracks skipped.
    """
    edges = bar_edges(pm)
    chroma = np.zeros((len(edges) - 1, 12))
    starts, ends = edges[:-1], edges[1:]
    for n in _notes(pm, drums=False):
        # Overlap of [start, end) with every bar: a note tied across bars counts in each of them.
        overlap = np.minimum(ends, n.end) - np.maximum(starts, n.start)
        chroma[:, n.pitch % 12] += np.clip(overlap, 0.0, None)
    return chroma


def bar_groove(pm: pretty_midi.PrettyMIDI, positions: int = 16) -> np.ndarray:
    """Per bar, a histogram of note onsets on a grid of `positions` steps → ndarray [n_bars, positions].

    Onsets are rounded to the nearest grid step (an onset a hair before a downbeat belongs to the next
    bar's first step); every note counts, drums included.
    """
    if positions < 1:
        raise ValueError(f"positions must be >= 1, got {positions}")
    edges = bar_edges(pm)
    n_bars = len(edges) - 1
    groove = np.zeros((n_bars, positions))
    if n_bars == 0:
        return groove
    for n in _notes(pm, drums=True):
        k = int(np.clip(np.searchsorted(edges, n.start, side="right") - 1, 0, n_bars - 1))
        frac = (n.start - edges[k]) / (edges[k + 1] - edges[k])
        step = round((k + frac) * positions)
        bar, pos = divmod(step, positions)
        if 0 <= bar < n_bars:
            groove[bar, pos] += 1
    return groove


def _mean_bar_cosine(x: np.ndarray, y: np.ndarray) -> float:
    """Mean cosine similarity of aligned rows; rows zero in both skipped, zero in one → 0; none → nan."""
    n = max(len(x), len(y))
    width = x.shape[1] if x.ndim == 2 else y.shape[1]
    xp = np.zeros((n, width))
    yp = np.zeros((n, width))
    xp[: len(x)] = x
    yp[: len(y)] = y
    nx = np.linalg.norm(xp, axis=1)
    ny = np.linalg.norm(yp, axis=1)
    keep = (nx > 0) | (ny > 0)
    if not keep.any():
        return float("nan")
    denom = nx * ny
    # One-sided empty bars have denom 0 and score 0; no division by zero, hence no NaN.
    sims = np.where(denom > 0, (xp * yp).sum(axis=1) / np.where(denom > 0, denom, 1.0), 0.0)
    return float(sims[keep].mean())


def chroma_similarity(a: pretty_midi.PrettyMIDI, b: pretty_midi.PrettyMIDI) -> float:
    """Mean per-bar cosine similarity of `bar_chroma` (1 = same pitch content bar by bar; nan if both empty)."""
    return _mean_bar_cosine(bar_chroma(a), bar_chroma(b))


def groove_similarity(a: pretty_midi.PrettyMIDI, b: pretty_midi.PrettyMIDI, positions: int = 16) -> float:
    """Mean per-bar cosine similarity of `bar_groove` (1 = same onset pattern bar by bar; nan if both empty)."""
    return _mean_bar_cosine(bar_groove(a, positions), bar_groove(b, positions))


def pitch_class_entropy(pm: pretty_midi.PrettyMIDI) -> float:
    """Entropy in bits of the whole piece's pitch-class histogram, counting notes (not durations).

    Counts, as the usual pitch-class-histogram entropy (MusDr / MusPy); 0 for one pitch class,
    log2(12) for twelve equally used ones; nan for a piece without (non-drum) notes.
    """
    counts = np.zeros(12)
    for n in _notes(pm, drums=False):
        counts[n.pitch % 12] += 1
    total = counts.sum()
    if total == 0:
        return float("nan")
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def note_density(pm: pretty_midi.PrettyMIDI) -> float:
    """Notes per bar (every note, drums included); 0.0 for a MIDI without notes."""
    n_bars = len(bar_edges(pm)) - 1
    if n_bars == 0:
        return 0.0
    return len(_notes(pm, drums=True)) / n_bars
