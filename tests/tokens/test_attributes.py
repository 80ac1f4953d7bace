"""Per-bar attributes from REMI tokens (hand-made bars, real chorales) and their quantile classes."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from conftest import chorale_midi
from musicvae.data.config import DataConfig
from musicvae.errors import UserError
from musicvae.tokens import build_tokenizer
from musicvae.tokens.attribute_classes import N_CLASSES, NAN_CLASS, AttributeBins
from musicvae.tokens.attributes import ATTRIBUTES, AttributeDefinitions, AttributeReader
from musicvae.tokens.tokenize import encode_score, load_score, prepare_score, token_table

ROOT = Path(__file__).resolve().parents[2]
RHYTHM, POLY, DENSITY, MEAN_PITCH, RANGE = range(len(ATTRIBUTES))


@pytest.fixture(scope="module")
def reader(remi_tokenizer):
    return AttributeReader(remi_tokenizer)


@pytest.fixture(scope="module")
def programs_tokenizer():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="prepare_data", overrides=["tokenizer=remi_programs"])
    return build_tokenizer(cfg.tokenizer)


def bar(ts: str = "4/4") -> list[str]:
    return ["Bar_None", f"TimeSig_{ts}"]


def notes(position: int, *pitches: int, dur: str = "1.0.8", program: int | None = None) -> list[str]:
    """A Position and notes struck there (a quarter note by default: Duration_1.0.8)."""
    out = [f"Position_{position}"]
    for pitch in pitches:
        out += [f"Program_{program}"] if program is not None else []
        out += [f"Pitch_{pitch}", "Velocity_63", f"Duration_{dur}"]
    return out


def encode(tokenizer, tokens: list[str]) -> list[int]:
    return [tokenizer.vocab[t] for t in tokens]


def test_four_quarter_notes(remi_tokenizer, reader):
    tokens = bar() + notes(0, 60) + notes(8, 62) + notes(16, 64) + notes(24, 65)
    (row,) = reader.bars(encode(remi_tokenizer, tokens))
    assert row[RHYTHM] == 4 / 32
    assert row[POLY] == 1
    assert row[DENSITY] == 4
    assert row[MEAN_PITCH] == (60 + 62 + 64 + 65) / 4
    assert row[RANGE] == 5


def test_held_whole_note_counts_at_every_onset(remi_tokenizer, reader):
    whole = notes(0, 48, dur="4.0.4")  # a whole note under the first quarter
    tokens = bar() + whole + ["Pitch_60", "Velocity_63", "Duration_1.0.8"]
    tokens += notes(8, 62) + notes(16, 64) + notes(24, 65)
    (row,) = reader.bars(encode(remi_tokenizer, tokens))
    assert row[POLY] == (2 + 2 + 2 + 2) / 4
    assert row[RHYTHM] == 4 / 32
    assert row[DENSITY] == 5
    assert row[RANGE] == 65 - 48


def test_short_note_ends_before_the_next_onset(remi_tokenizer, reader):
    # an eighth note (0.4.8) at 0 is gone by the onset at 8; a half note at 0 still sounds there
    tokens = bar() + notes(0, 60, dur="0.4.8") + notes(0, 55, dur="2.0.8") + notes(8, 62)
    (row,) = reader.bars(encode(remi_tokenizer, tokens))
    assert row[POLY] == (2 + 2) / 2


def test_chord_at_one_position(remi_tokenizer, reader):
    (row,) = reader.bars(encode(remi_tokenizer, bar() + notes(8, 60, 64, 67)))
    assert row[POLY] == 3
    assert row[RHYTHM] == 1 / 32
    assert row[DENSITY] == 3
    assert row[MEAN_PITCH] == pytest.approx((60 + 64 + 67) / 3)
    assert row[RANGE] == 7


def test_empty_bar(remi_tokenizer, reader):
    rows = reader.bars(encode(remi_tokenizer, bar() + notes(0, 60) + bar() + bar() + notes(4, 72)))
    assert rows.shape == (3, len(ATTRIBUTES))
    empty = rows[1]
    assert empty[RHYTHM] == 0 and empty[POLY] == 0 and empty[DENSITY] == 0 and empty[RANGE] == 0
    assert np.isnan(empty[MEAN_PITCH])  # undefined, not a fake pitch
    assert rows[0, MEAN_PITCH] == 60 and rows[2, MEAN_PITCH] == 72
    assert rows[0, RANGE] == 0  # a single note has no range


def test_three_four_bar_has_24_positions(remi_tokenizer, reader):
    tokens = bar("3/4") + notes(0, 60) + notes(8, 62) + notes(16, 64)
    (row,) = reader.bars(encode(remi_tokenizer, tokens))
    assert row[RHYTHM] == 3 / 24
    assert reader.bar_lengths()["TimeSig_3/4"] == 24
    assert reader.bar_lengths()["TimeSig_4/4"] == 32


def test_note_held_across_the_bar_line(remi_tokenizer, reader):
    # a whole note from beat 3 of bar 1 sounds until beat 3 of bar 2
    tokens = bar() + notes(16, 48, dur="4.0.4") + bar() + notes(0, 60) + notes(8, 62) + notes(16, 64)
    rows = reader.bars(encode(remi_tokenizer, tokens))
    assert rows[0, POLY] == 1
    assert rows[1, POLY] == (2 + 2 + 1) / 3
    assert rows[1, DENSITY] == 3  # held, not struck: no new note


def test_held_note_follows_the_bar_length_of_its_metre(remi_tokenizer, reader):
    # In a 3/4 bar (48 ticks) a half note on beat 3 (tick 32) ends at tick 64: it sounds at the next
    # bar's first onset (tick 48) and has ended by its second (tick 64). A 4/4-long bar would not.
    tokens = bar("3/4") + notes(16, 48, dur="2.0.8") + bar() + notes(0, 60) + notes(8, 62)
    rows = reader.bars(encode(remi_tokenizer, tokens))
    assert rows[1, POLY] == (2 + 1) / 2


def test_bar_lengths_and_durations_agree_with_grammar_and_miditok(remi_tokenizer, reader):
    from musicvae.tokens.grammar import RemiGrammar

    info = RemiGrammar(remi_tokenizer)._cpu.info  # (V, 4): column 2 is a TimeSig's bar length
    for name, length in reader.bar_lengths().items():
        assert length == int(info[remi_tokenizer.vocab[name], 2]), name
    # Duration ticks: the reader's table against miditok's own, for each metre's ticks per beat
    for row, per_beat in enumerate(reader._ts_ticks_beat):
        for value, ticks in remi_tokenizer._tpb_tokens_to_ticks[int(per_beat)].items():
            assert reader._dur_ticks[row, remi_tokenizer.vocab[f"Duration_{value}"]] == ticks


def test_tokens_before_the_first_bar_and_specials_are_ignored(remi_tokenizer, reader):
    body = bar() + notes(0, 60) + notes(8, 64)
    ids = encode(remi_tokenizer, body)
    stray = encode(remi_tokenizer, notes(4, 70))  # the tail of a bar cut off before this segment
    with_junk = [1, *stray, *ids[:4], 0, 3, *ids[4:], 2, 0, 0]  # BOS, MASK, EOS, PAD
    np.testing.assert_array_equal(reader.bars(with_junk), reader.bars(ids))
    assert reader.bars(np.asarray(ids, dtype=np.int32)).dtype == np.float64


def test_no_bar_and_bad_ids(remi_tokenizer, reader):
    assert reader.bars([]).shape == (0, len(ATTRIBUTES))
    assert reader.bars(encode(remi_tokenizer, notes(0, 60))).shape == (0, len(ATTRIBUTES))
    with pytest.raises(ValueError, match="1-D"):
        reader.bars(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="lie in"):
        reader.bars([remi_tokenizer.vocab["Bar_None"], len(remi_tokenizer.vocab)])


def test_program_tokens_and_drums(programs_tokenizer):
    reader = AttributeReader(programs_tokenizer)
    drum = ["Program_-1", "PitchDrum_36", "Velocity_63", "Duration_0.1.8"]
    tokens = bar() + notes(0, 60, 64, program=0) + ["Position_4", *drum]  # a drum-only onset
    tokens += notes(8, 67, program=40) + drum
    tokens += bar() + ["Position_0", *drum, *drum[:1], "PitchDrum_38", *drum[2:]]  # drums only
    rows = reader.bars(encode(programs_tokenizer, tokens))
    assert rows.shape == (2, len(ATTRIBUTES))
    first, drums_only = rows
    assert first[RHYTHM] == 3 / 32  # positions 0, 4 (drum alone) and 8
    assert first[DENSITY] == 5  # 3 pitched notes and 2 drum hits
    assert first[POLY] == (2 + 1) / 2  # over the pitched onsets only; drums never sound as notes
    assert first[MEAN_PITCH] == pytest.approx((60 + 64 + 67) / 3)
    assert first[RANGE] == 7  # drum numbers are not pitches
    assert drums_only[RHYTHM] == 1 / 32 and drums_only[DENSITY] == 2
    assert drums_only[POLY] == 0 and drums_only[RANGE] == 0 and np.isnan(drums_only[MEAN_PITCH])


def test_program_drum_before_a_plain_pitch_is_a_drum(programs_tokenizer):
    # without PitchDrum tokens miditok writes Program_-1 Pitch_x for drums
    reader = AttributeReader(programs_tokenizer)
    tokens = bar() + notes(0, 60, program=0) + notes(0, 36, program=-1)
    (row,) = reader.bars(encode(programs_tokenizer, tokens))
    assert row[DENSITY] == 2 and row[POLY] == 1 and row[MEAN_PITCH] == 60 and row[RANGE] == 0


# ---------------------------------------------------------------------------------------------
# Real data: Bach chorales, checked against the score miditok decodes from the same tokens


CHORALES = ("bwv1.6", "bwv10.7", "bwv101.7", "bwv102.7", "bwv103.6", "bwv104.6", "bwv11.6")  # the last in 3/4


def _chorales(tokenizer, count: int = 6) -> list[np.ndarray]:
    stems = CHORALES[:count] + CHORALES[-1:]
    paths = chorale_midi(stems, Path(tempfile.mkdtemp(prefix="chorales-")))
    return [encode_score(tokenizer, prepare_score(load_score(p), True, False)) for p in paths]


def _attributes_of_decoded(tokenizer, ids: np.ndarray, n_bars: int) -> np.ndarray:
    """The attributes computed independently from miditok's decoded notes (one metre per piece)."""
    score = tokenizer.decode([ids.tolist()] if not tokenizer.one_token_stream else ids.tolist())
    (ts,) = score.time_signatures
    per_bar = score.ticks_per_quarter * 4 * ts.numerator // ts.denominator
    per_pos = score.ticks_per_quarter * 4 // ts.denominator // tokenizer.config.max_num_pos_per_beat
    spans = [(n.time, n.time + n.duration, n.pitch) for track in score.tracks for n in track.notes]
    out = np.zeros((n_bars, len(ATTRIBUTES)))
    for b in range(n_bars):
        struck = [s for s in spans if b * per_bar <= s[0] < (b + 1) * per_bar]
        onsets = sorted({s[0] for s in struck})
        pitches = [s[2] for s in struck]
        out[b, RHYTHM] = len(onsets) / (per_bar // per_pos)
        poly = [sum(1 for s in spans if s[0] <= t < s[1]) for t in onsets]
        out[b, POLY] = np.mean(poly) if poly else 0
        out[b, DENSITY] = len(struck)
        out[b, MEAN_PITCH] = np.mean(pitches) if pitches else np.nan
        out[b, RANGE] = max(pitches) - min(pitches) if pitches else 0
    return out


def test_chorales(remi_tokenizer, reader):
    bar_id = remi_tokenizer.vocab["Bar_None"]
    pitch_ids = np.array([ty == "Pitch" for ty in token_table(remi_tokenizer).types])
    for ids in _chorales(remi_tokenizer):
        rows = reader.bars(ids)
        assert rows.shape == (int((ids == bar_id).sum()), len(ATTRIBUTES))
        assert np.isfinite(rows[:, [RHYTHM, POLY, DENSITY, RANGE]]).all()
        has_notes = rows[:, DENSITY] > 0
        assert np.isfinite(rows[has_notes, MEAN_PITCH]).all()
        assert ((rows[:, RHYTHM] >= 0) & (rows[:, RHYTHM] <= 1)).all()
        assert rows[:, DENSITY].sum() == pitch_ids[ids].sum()
        assert (rows[has_notes, POLY] >= 1).all()
        expected = _attributes_of_decoded(remi_tokenizer, ids, len(rows))
        np.testing.assert_allclose(rows, expected, equal_nan=True)


def test_segment_cut_at_a_bar(remi_tokenizer, reader):
    """A segment's rows are the piece's rows, but notes held into its first bar are not known."""
    (ids,) = _chorales(remi_tokenizer, count=1)[:1]
    starts = np.flatnonzero(ids == remi_tokenizer.vocab["Bar_None"])
    whole = reader.bars(ids)
    part = reader.bars(ids[starts[3] : starts[7]])
    assert part.shape == (4, len(ATTRIBUTES))
    np.testing.assert_array_equal(part[1:], whole[4:7])
    keep = [RHYTHM, DENSITY, MEAN_PITCH, RANGE]
    np.testing.assert_array_equal(part[0, keep], whole[3, keep])


# ---------------------------------------------------------------------------------------------
# Quantile classes


def _training_values(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [
            rng.uniform(0, 1, n),
            rng.gamma(2.0, 1.0, n),
            rng.exponential(10, n),
            rng.normal(64, 6, n),
            rng.uniform(0, 30, n),
        ],
        axis=1,
    )


def test_bins_give_equal_classes_on_a_known_distribution():
    values = _training_values(8000, seed=0)
    bins = AttributeBins.fit(values)
    for a, name in enumerate(ATTRIBUTES):
        assert len(bins.edges[name]) == N_CLASSES - 1
        shares = np.bincount(bins.classes(values)[:, a], minlength=N_CLASSES) / len(values)
        np.testing.assert_allclose(shares, 1 / N_CLASSES, atol=0.002, err_msg=name)
        # fresh draws of the same distributions: equal shares up to sampling noise
        fresh = _training_values(8000, seed=1)
        shares = np.bincount(bins.classes(fresh)[:, a], minlength=N_CLASSES) / len(fresh)
        np.testing.assert_allclose(shares, 1 / N_CLASSES, atol=0.02, err_msg=name)


def test_classes_are_monotone_and_cover_all_classes():
    bins = AttributeBins.fit(_training_values(2000, seed=2))
    grid = np.linspace(-100, 200, 3001)
    cls = bins.classes(np.repeat(grid[:, None], len(ATTRIBUTES), axis=1))
    assert cls.dtype == np.int64
    assert (np.diff(cls, axis=0) >= 0).all()
    assert (cls[0] == 0).all() and (cls[-1] == N_CLASSES - 1).all()
    for a in range(len(ATTRIBUTES)):
        assert set(cls[:, a]) == set(range(N_CLASSES))


def test_bins_round_trip_exactly():
    bins = AttributeBins.fit(_training_values(1000, seed=3))
    d = json.loads(json.dumps(bins.to_dict()))
    again = AttributeBins.from_dict(d)
    assert again.edges == bins.edges
    assert all(type(x) is float for edges in bins.to_dict()["edges"].values() for x in edges)
    probe = _training_values(500, seed=4)
    np.testing.assert_array_equal(again.classes(probe), bins.classes(probe))
    with pytest.raises(ValueError, match="classes"):
        AttributeBins.from_dict({**d, "n_classes": 4})


def test_nan_is_ignored_by_fit_and_gets_the_middle_class():
    values = _training_values(1000, seed=5)
    with_nan = values.copy()
    with_nan[::3, ATTRIBUTES.index("mean_pitch")] = np.nan
    bins = AttributeBins.fit(with_nan)
    kept = with_nan[~np.isnan(with_nan[:, MEAN_PITCH])]
    assert bins.edges["mean_pitch"] == AttributeBins.fit(kept).edges["mean_pitch"]
    cls = bins.classes(with_nan)
    assert (cls[::3, MEAN_PITCH] == NAN_CLASS).all()
    assert NAN_CLASS == N_CLASSES // 2


def test_constant_attribute_and_ties():
    values = _training_values(800, seed=6)
    values[:, DENSITY] = 4.0  # constant
    values[:, RANGE] = np.arange(800) % 4  # four tied values, 25% each
    bins = AttributeBins.fit(values)
    cls = bins.classes(values)
    assert (cls[:, DENSITY] == N_CLASSES // 2).all()  # the middle class: no information
    probe = np.tile(values[:1], (2, 1))
    probe[:, DENSITY] = [3.0, 5.0]
    assert bins.classes(probe)[:, DENSITY].tolist() == [0, N_CLASSES - 1]
    # a tie is never split; each tied block lands where the middle of its 25% share falls
    by_value = {v: set(cls[values[:, RANGE] == v, RANGE]) for v in range(4)}
    assert by_value == {0: {1}, 1: {3}, 2: {5}, 3: {7}}


def test_bins_reject_bad_input():
    with pytest.raises(ValueError, match="shape"):
        AttributeBins.fit(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="finite"):
        AttributeBins.fit(np.full((10, len(ATTRIBUTES)), np.inf))
    values = _training_values(50, seed=7)
    values[:, MEAN_PITCH] = np.nan
    with pytest.raises(ValueError, match="mean_pitch"):
        AttributeBins.fit(values)
    with pytest.raises(ValueError, match="nondecreasing"):
        AttributeBins({name: [3, 2, 1, 0, 0, 0, 0] for name in ATTRIBUTES})
    with pytest.raises(ValueError, match="shape"):
        AttributeBins.fit(_training_values(50, seed=8)).classes(np.zeros(3))


# ---------------------------------------------------------------------------------------------
# MuseMorphose's definitions (data.attributes.rhythm / polyphony = sub_beats)


@pytest.fixture(scope="module")
def sub_beats_reader(remi_tokenizer):
    return AttributeReader(remi_tokenizer, AttributeDefinitions.musemorphose())


def test_sub_beats_on_hand_made_bars(remi_tokenizer, reader, sub_beats_reader):
    """Values worked out by hand: a 4/4 bar has 16 sixteenths (32 positions at 8 per beat)."""
    cases = {  # tokens of one bar -> (rhythm, polyphony) under sub_beats, then under ours
        "four quarters": (notes(0, 60) + notes(8, 62) + notes(16, 64) + notes(24, 65), (4 / 16, 1.0), (4 / 32, 1.0)),
        "a half note, then a rest": (notes(0, 60, dur="2.0.8"), (1 / 16, 8 / 16), (1 / 32, 1.0)),
        "a whole-note triad": (notes(0, 60, 64, 67, dur="4.0.4"), (1 / 16, 3.0), (1 / 32, 3.0)),
        # two onsets a 32nd apart share a sixteenth; a 32nd note covers no whole sixteenth (as MuseMorphose's
        # duration // 120 at 480 ticks per beat)
        "32nds in one sixteenth": (notes(2, 60, dur="0.1.8") + notes(3, 62, dur="0.1.8"), (1 / 16, 0.0), (2 / 32, 1.0)),
    }
    for name, (tokens, sub_beats, ours) in cases.items():
        ids = encode(remi_tokenizer, bar() + tokens)
        (row,) = sub_beats_reader.bars(ids)
        assert (row[RHYTHM], row[POLY]) == pytest.approx(sub_beats), name
        (row,) = reader.bars(ids)
        assert (row[RHYTHM], row[POLY]) == pytest.approx(ours), name


def test_sub_beats_carry_held_notes_into_the_next_bar(remi_tokenizer, reader, sub_beats_reader):
    """A whole note struck on beat 3 sounds on 8 sixteenths of its bar and 8 of the next, which has no onset:
    MuseMorphose counts it there (0.5), ours averages over onsets and the next bar has none (0)."""
    ids = encode(remi_tokenizer, bar() + notes(16, 48, dur="4.0.4") + bar())
    np.testing.assert_allclose(sub_beats_reader.bars(ids)[:, [RHYTHM, POLY]], [[1 / 16, 0.5], [0.0, 0.5]])
    np.testing.assert_allclose(reader.bars(ids)[:, [RHYTHM, POLY]], [[1 / 32, 1.0], [0.0, 0.0]])


def test_sub_beats_follow_the_metre(remi_tokenizer, sub_beats_reader):
    """A 3/4 bar has 12 sixteenths: a dotted half note fills them all."""
    (row,) = sub_beats_reader.bars(encode(remi_tokenizer, bar("3/4") + notes(0, 60, dur="3.0.8")))
    assert (row[RHYTHM], row[POLY]) == pytest.approx((1 / 12, 1.0))


def test_one_definition_changes_one_attribute(remi_tokenizer, reader):
    """rhythm=sub_beats leaves polyphony as ours and the reverse; the other attributes never move."""
    ids = encode(remi_tokenizer, bar() + notes(0, 60, dur="2.0.8") + notes(4, 64) + bar() + notes(8, 67, 71))
    ours = reader.bars(ids)
    rhythm_only = AttributeReader(remi_tokenizer, AttributeDefinitions(rhythm="sub_beats")).bars(ids)
    poly_only = AttributeReader(remi_tokenizer, AttributeDefinitions(polyphony="sub_beats")).bars(ids)
    keep = [DENSITY, MEAN_PITCH, RANGE]
    np.testing.assert_array_equal(rhythm_only[:, [POLY, *keep]], ours[:, [POLY, *keep]])
    np.testing.assert_array_equal(poly_only[:, [RHYTHM, *keep]], ours[:, [RHYTHM, *keep]])
    assert not np.array_equal(rhythm_only[:, RHYTHM], ours[:, RHYTHM])
    assert not np.array_equal(poly_only[:, POLY], ours[:, POLY])


def _musemorphose_of_decoded(tokenizer, ids: np.ndarray, n_bars: int) -> np.ndarray:
    """(n_bars, 2) rhythm, polyphony as MuseMorphose's `get_onsets_timing` / `compute_polyphonicity` compute
    them, from miditok's decoded notes: onset and held records over the piece's sixteenths, a note covering
    `duration // sixteenth` of them from the one it starts in, each bar the mean of its own."""
    score = tokenizer.decode([ids.tolist()] if not tokenizer.one_token_stream else ids.tolist())
    (ts,) = score.time_signatures
    sixteenth = score.ticks_per_quarter // 4
    per_bar = score.ticks_per_quarter * 4 * ts.numerator // ts.denominator // sixteenth  # sixteenths per bar
    onsets, held = np.zeros(n_bars * per_bar), np.zeros(n_bars * per_bar)
    for note in (n for track in score.tracks for n in track.notes):
        start = note.time // sixteenth
        onsets[start] = 1
        held[start : start + note.duration // sixteenth] += 1
    return np.stack([onsets.reshape(n_bars, per_bar).mean(1), held.reshape(n_bars, per_bar).mean(1)], axis=1)


def test_sub_beats_match_musemorphose_on_chorales(remi_tokenizer, reader, sub_beats_reader):
    """Pinned to MuseMorphose's algorithm on every bar of real chorales; and on these chorales, written in
    sixteenths and longer, its rhythm is exactly twice ours (16 vs 32 slots), so the classes agree."""
    bars = 0
    for ids in _chorales(remi_tokenizer):
        rows = sub_beats_reader.bars(ids)
        np.testing.assert_allclose(rows[:, [RHYTHM, POLY]], _musemorphose_of_decoded(remi_tokenizer, ids, len(rows)))
        np.testing.assert_allclose(rows[:, RHYTHM], 2 * reader.bars(ids)[:, RHYTHM])
        bars += len(rows)
    assert bars > 100


def test_bins_carry_their_definitions(remi_tokenizer):
    values = _training_values(400, seed=0)
    bins = AttributeBins.fit(values, AttributeDefinitions.musemorphose())
    again = AttributeBins.from_dict(json.loads(json.dumps(bins.to_dict())))
    assert again.definitions == AttributeDefinitions.musemorphose()
    assert again.reader(remi_tokenizer).definitions == AttributeDefinitions.musemorphose()
    old = bins.to_dict()
    del old["definitions"]  # class edges saved before definitions were stored were fitted with ours
    assert AttributeBins.from_dict(old).definitions == AttributeDefinitions()
    counts = bins.histogram(values)
    assert all(sum(c) == len(values) - np.isnan(values[:, a]).sum() for a, c in enumerate(counts.values()))


def test_unknown_definition_names_the_key():
    with pytest.raises(UserError, match=r"data.attributes.polyphony='beats' is not one of onsets, sub_beats"):
        DataConfig.from_cfg({"attributes": {"polyphony": "beats"}})
    with pytest.raises(UserError, match="data.attributes has no key 'rhytm'"):
        DataConfig.from_cfg({"attributes": {"rhytm": "sub_beats"}})


def test_training_refuses_an_empty_class_unless_allowed(caplog):
    from musicvae.training.module import check_attribute_classes

    counts = {"rhythm": [5] * N_CLASSES, "polyphony": [9, 9, 9, 0, 9, 0, 9, 9]}
    check_attribute_classes(counts, ["rhythm"], allow_empty=False)  # polyphony is not conditioned on
    with pytest.raises(UserError, match=r"polyphony class 3, 5 .*data.attributes.allow_empty_classes=true"):
        check_attribute_classes(counts, ["rhythm", "polyphony"], allow_empty=False)
    check_attribute_classes(counts, ["rhythm", "polyphony"], allow_empty=True)
    assert "without a training latent" in caplog.text
