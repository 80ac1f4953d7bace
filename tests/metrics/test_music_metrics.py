"""Fidelity metrics and piece statistics on small MIDIs built here with pretty_midi.

At 120 qpm in 4/4 a beat is 0.5 s and a bar 2 s; a 16-step grid step is 0.125 s.
"""

from __future__ import annotations

import math

import numpy as np
import pretty_midi
import pytest

from musicvae.metrics.music import (
    bar_chroma,
    bar_edges,
    bar_groove,
    chroma_similarity,
    groove_similarity,
    note_density,
    pitch_class_entropy,
)


def make_pm(notes, tempo=120.0, time_signature=None, drums=()):
    """notes / drums: (pitch, start, end) in seconds; time_signature: (numerator, denominator)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    if time_signature:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(*time_signature, 0.0))
    inst = pretty_midi.Instrument(program=0)
    inst.notes = [pretty_midi.Note(100, p, s, e) for p, s, e in notes]
    pm.instruments.append(inst)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        kit.notes = [pretty_midi.Note(100, p, s, e) for p, s, e in drums]
        pm.instruments.append(kit)
    return pm


def quarters(pitches, start=0.0):
    """One quarter note (0.5 s) per pitch, back to back."""
    return [(p, start + 0.5 * i, start + 0.5 * (i + 1)) for i, p in enumerate(pitches)]


# C major arpeggio over two bars
MELODY = quarters([60, 64, 67, 72, 67, 64, 60, 55])


# ---- bars ----------------------------------------------------------------------------------------


def test_bar_edges_follow_downbeats_and_stop_at_last_note():
    np.testing.assert_allclose(bar_edges(make_pm(MELODY)), [0.0, 2.0, 4.0])
    # 3/4: bars of 1.5 s; 8 quarters = 2 bars and 2 beats → 3 bars
    np.testing.assert_allclose(bar_edges(make_pm(MELODY, time_signature=(3, 4))), [0.0, 1.5, 3.0, 4.5])


def test_trailing_meta_events_add_no_bars():
    pm = make_pm(MELODY)
    pm.text_events.append(pretty_midi.Text("end", 20.0))
    np.testing.assert_allclose(bar_edges(pm), [0.0, 2.0, 4.0])
    assert note_density(pm) == 4.0


def test_fallback_to_4_4_at_tempo_without_downbeats():
    pm = make_pm(quarters([60] * 6), tempo=90.0)  # a beat is 2/3 s, a bar 8/3 s; 6 beats → 2 bars
    pm.get_downbeats = lambda start_time=0.0: np.array([])
    np.testing.assert_allclose(bar_edges(pm), [0.0, 8 / 3, 16 / 3])


def test_empty_midi_has_no_bars():
    pm = pretty_midi.PrettyMIDI()
    assert bar_chroma(pm).shape == (0, 12)
    assert bar_groove(pm).shape == (0, 16)
    assert note_density(pm) == 0.0
    assert math.isnan(pitch_class_entropy(pm))


# ---- per-bar vectors -----------------------------------------------------------------------------


def test_bar_chroma_weights_duration_within_each_bar():
    # C from 1.5 to 2.5 s crosses the bar line: 0.5 s in each bar; E a half note in bar 0.
    pm = make_pm([(60, 1.5, 2.5), (64, 0.0, 1.0), (48, 3.0, 3.5)], drums=[(38, 0.0, 0.5)])
    chroma = bar_chroma(pm)
    assert chroma.shape == (2, 12)
    expected = np.zeros((2, 12))
    expected[0, 0], expected[0, 4] = 0.5, 1.0
    expected[1, 0] = 0.5 + 0.5  # tail of the tied C + the C3 (pitch class, any octave); drums ignored
    np.testing.assert_allclose(chroma, expected)


def test_bar_groove_positions():
    pm = make_pm(
        [(60, 0.0, 0.5), (62, 0.5, 1.0), (64, 0.5, 1.0), (65, 2.25, 2.5), (67, 1.9999999, 2.2)],
        drums=[(36, 1.875, 2.0)],
    )
    groove = bar_groove(pm)
    expected = np.zeros((2, 16))
    expected[0, 0] = 1
    expected[0, 4] = 2  # chord: two onsets at beat 2
    expected[0, 15] = 1  # the drum hit counts
    expected[1, 2] = 1
    expected[1, 0] = 1  # an onset a hair before the bar line belongs to the next bar
    np.testing.assert_array_equal(groove, expected)
    assert bar_groove(pm, positions=4)[0].tolist() == [1, 2, 0, 0]  # 1.875 s rounds to the next bar


def test_bar_groove_in_3_4():
    pm = make_pm(quarters([60, 62, 64, 65]), time_signature=(3, 4))
    groove = bar_groove(pm, positions=12)  # a quarter is 4 steps of a 3/4 bar
    assert groove[0].nonzero()[0].tolist() == [0, 4, 8]
    assert groove[1].nonzero()[0].tolist() == [0]


# ---- similarities --------------------------------------------------------------------------------


def test_identical_pieces_score_one():
    a, b = make_pm(MELODY), make_pm(MELODY)
    assert chroma_similarity(a, b) == pytest.approx(1.0)
    assert groove_similarity(a, b) == pytest.approx(1.0)


def test_disjoint_pitch_classes_chroma_zero_groove_one():
    a = make_pm(quarters([60, 64, 67, 60]))  # C E G
    b = make_pm(quarters([62, 66, 69, 62]))  # D F# A
    assert chroma_similarity(a, b) == 0.0
    assert groove_similarity(a, b) == pytest.approx(1.0)


def test_disjoint_onset_positions_groove_zero():
    a = make_pm([(60, 0.0, 0.5), (60, 1.0, 1.5)])  # steps 0 and 8
    b = make_pm([(60, 0.5, 1.0), (60, 1.5, 2.0)])  # steps 4 and 12
    assert groove_similarity(a, b) == 0.0
    assert chroma_similarity(a, b) == pytest.approx(1.0)


def test_transposed_copy_keeps_groove_lowers_chroma():
    a = make_pm(quarters([60, 64, 67, 64]))  # C E G E: chroma (C 0.5, E 1.0, G 0.5)
    b = make_pm(quarters([67, 71, 74, 71]))  # up a fifth: G B D B: (G 0.5, B 1.0, D 0.5)
    assert groove_similarity(a, b) == pytest.approx(1.0)
    # only G is shared: 0.5*0.5 / (|a| |b|) with |a|² = |b|² = 1.5
    assert chroma_similarity(a, b) == pytest.approx(0.25 / 1.5)


def test_bars_aligned_up_to_longer_piece():
    one_bar = make_pm(MELODY[:4])
    assert chroma_similarity(make_pm(MELODY), one_bar) == pytest.approx(0.5)  # bar 1 empty in one → 0
    assert groove_similarity(one_bar, make_pm(MELODY)) == pytest.approx(0.5)


def test_bars_empty_in_both_are_skipped():
    notes = MELODY[:4] + quarters([60, 64, 67, 72], start=4.0)  # bar 1 silent
    a, b = make_pm(notes), make_pm(notes)
    assert len(bar_chroma(a)) == 3
    assert chroma_similarity(a, b) == pytest.approx(1.0)
    assert groove_similarity(a, b) == pytest.approx(1.0)


def test_empty_pieces():
    empty = pretty_midi.PrettyMIDI()
    assert math.isnan(chroma_similarity(empty, pretty_midi.PrettyMIDI()))
    assert math.isnan(groove_similarity(empty, pretty_midi.PrettyMIDI()))
    assert chroma_similarity(empty, make_pm(MELODY)) == 0.0
    assert groove_similarity(make_pm(MELODY), empty) == 0.0


def test_similarities_are_nan_free_on_random_pieces():
    rng = np.random.default_rng(0)
    for _ in range(10):
        pieces = []
        for _ in range(2):
            starts = np.sort(rng.uniform(0, 8, size=rng.integers(1, 20)))
            pieces.append(make_pm([(int(rng.integers(40, 90)), s, s + rng.uniform(0.05, 1)) for s in starts]))
        for sim in (chroma_similarity(*pieces), groove_similarity(*pieces)):
            assert 0.0 <= sim <= 1.0 + 1e-12


# ---- piece statistics ----------------------------------------------------------------------------


def test_pitch_class_entropy_single_class_is_zero():
    assert pitch_class_entropy(make_pm(quarters([48, 60, 72, 60]))) == 0.0


def test_pitch_class_entropy_twelve_classes_is_log2_12():
    assert pitch_class_entropy(make_pm(quarters(range(60, 72)))) == pytest.approx(math.log2(12))


def test_pitch_class_entropy_counts_notes_not_durations_and_skips_drums():
    # one long C, one short D: by count it is a fair coin (1 bit) whatever the durations
    pm = make_pm([(60, 0.0, 1.9), (62, 1.9, 2.0)], drums=[(36, 0.0, 0.1), (42, 0.5, 0.6)])
    assert pitch_class_entropy(pm) == pytest.approx(1.0)
    three_to_one = make_pm(quarters([60, 60, 60, 62]))
    assert pitch_class_entropy(three_to_one) == pytest.approx(
        -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    )


def test_note_density_on_a_written_file(tmp_path):
    # 10 notes over 2.5 bars → 3 bars; written and read back through a real MIDI file
    path = tmp_path / "piece.mid"
    make_pm(quarters([60, 62, 64, 65, 67, 69, 71, 72, 74, 76])).write(str(path))
    pm = pretty_midi.PrettyMIDI(str(path))
    assert len(bar_edges(pm)) - 1 == 3
    assert note_density(pm) == pytest.approx(10 / 3)
    assert groove_similarity(pm, make_pm(quarters([60] * 10))) == pytest.approx(1.0)
