"""Bar-aligned windows, the token cap, and the split by piece."""

import numpy as np
import pytest

from musicvae.data import midi_to_segments
from musicvae.data.config import DataConfig
from musicvae.data.segments import assign_splits, content_key, cut_windows, split_of
from musicvae.errors import UserError
from musicvae.tokens import tokens_to_midi
from musicvae.tokens.tokenize import SkipFile, load_score, token_table


def onsets_pitches(score):
    tpq = score.ticks_per_quarter
    return sorted((n.time / tpq, n.pitch) for t in score.tracks for n in t.notes)


@pytest.mark.parametrize(("numerator", "bars", "hop"), [(4, 4, 2), (3, 4, 2), (4, 2, 2), (4, 4, 4)])
def test_windows_start_on_bar_lines_and_hold_bars(remi_tokenizer, make_piece, tmp_path, numerator, bars, hop):
    tok = remi_tokenizer
    path = make_piece(tmp_path / "p.mid", bars=10, numerator=numerator, programs=(0,))
    segments = midi_to_segments(
        path, tok, {"path": str(tmp_path), "bars": bars, "hop_bars": hop, "max_tokens": 2048}
    )
    starts = list(range(0, 10 - bars + 1, hop))
    assert len(segments) == len(starts)
    original = onsets_pitches(load_score(path))
    bar_beats = numerator  # quarter notes per bar
    for start, segment in zip(starts, segments, strict=True):
        assert tok[segment[0]] == "Bar_None" and tok[segment[1]] == f"TimeSig_{numerator}/4"
        assert sum(tok[i] == "Bar_None" for i in segment) == bars
        decoded, dropped = tokens_to_midi(tok, segment)
        assert dropped == 0
        lo, hi = start * bar_beats, (start + bars) * bar_beats
        want = [(t - lo, p) for t, p in original if lo <= t < hi]
        assert onsets_pitches(decoded) == want


def test_non_overlapping_windows_for_reconstruction(remi_tokenizer, make_piece, tmp_path):
    path = make_piece(tmp_path / "p.mid", bars=10)
    cfg = {"path": str(tmp_path), "bars": 4, "hop_bars": 2, "max_tokens": 2048}
    assert len(midi_to_segments(path, remi_tokenizer, cfg)) == 4  # bars 0, 2, 4, 6
    assert len(midi_to_segments(path, remi_tokenizer, cfg, hop_bars=4)) == 2  # bars 0-3, 4-7


def test_midi_to_segments_names_the_bad_file(remi_tokenizer, make_piece, tmp_path):
    short = make_piece(tmp_path / "short.mid", bars=2)
    with pytest.raises(UserError, match="short.mid.*too_short"):
        midi_to_segments(short, remi_tokenizer, {"path": str(tmp_path)})
    junk = tmp_path / "junk.mid"
    junk.write_text("not a midi file")
    with pytest.raises(UserError, match="junk.mid.*not_midi"):
        midi_to_segments(junk, remi_tokenizer, {"path": str(tmp_path)})


def _bar(tok, notes: int) -> list[int]:
    """A bar of `notes` quarter notes (or an empty bar), as ids."""
    ids = [tok["Bar_None"], tok["TimeSig_4/4"]]
    for k in range(notes):
        ids += [tok[f"Position_{(8 * k) % 32}"], tok["Pitch_60"], tok["Velocity_63"], tok["Duration_1.0.8"]]
    return ids


def test_empty_windows_are_dropped_and_counted(remi_tokenizer):
    tok = remi_tokenizer
    ids = np.array(_bar(tok, 2) * 2 + _bar(tok, 0) * 6 + _bar(tok, 2) * 2)  # notes in bars 0-1 and 8-9
    out = cut_windows(ids, token_table(tok), DataConfig(bars=4, hop_bars=2), hop_bars=2)
    assert out.start_bars == [0, 6]
    assert out.counts["windows"] == 4 and out.counts["empty_windows"] == 2


@pytest.mark.parametrize("overlong", ["truncate", "drop"])
def test_overlong_windows(remi_tokenizer, overlong):
    tok = remi_tokenizer
    table = token_table(tok)
    ids = np.array(
        _bar(tok, 4) + _bar(tok, 30) + _bar(tok, 1) * 2
    )  # one window of 4 bars: 18 + 122 + 6 + 6 = 152 tokens
    out = cut_windows(
        ids, table, DataConfig(bars=4, hop_bars=4, max_tokens=50, overlong=overlong), hop_bars=4
    )
    if overlong == "drop":
        assert out.segments == [] and out.counts["overlong_dropped"] == 1
        return
    (segment,) = out.segments
    assert out.counts["overlong_truncated"] == 1
    assert 40 < len(segment) <= 50
    assert table.event_start[ids[len(segment)]]  # cut just before an event: no note lost its attributes
    decoded, dropped = tokens_to_midi(tok, segment.tolist())
    assert dropped == 0 and len(decoded.tracks[0].notes) == (len(segment) - 4) // 4


def test_too_short_piece_is_skipped(remi_tokenizer):
    ids = np.array(_bar(remi_tokenizer, 1) * 3)
    with pytest.raises(SkipFile) as info:
        cut_windows(ids, token_table(remi_tokenizer), DataConfig(bars=4), hop_bars=2)
    assert info.value.reason == "too_short"


def test_split_is_stable_and_proportional_over_paths():
    paths = [f"folder{i % 7}/piece{i}.mid" for i in range(3000)]
    splits = [split_of(p, 0.1, 0.1) for p in paths]
    assert splits == [split_of(p, 0.1, 0.1) for p in paths]  # a pure function of the path
    share = {s: splits.count(s) / len(paths) for s in ("train", "val", "test")}
    assert abs(share["val"] - 0.1) < 0.025 and abs(share["test"] - 0.1) < 0.025
    assert {split_of(p, 0.0, 0.0) for p in paths} == {"train"}


def test_split_is_the_same_in_every_process():
    """Golden values: a salted hash (Python's hash()) would move pieces between runs."""
    assert [split_of(p, 0.1, 0.1) for p in ("oneills1850/0013.mid", "j.mid", "bwv1.6.mid", "a.mid")] == [
        "test",
        "val",
        "train",
        "train",
    ]


def random_score(seed: int, tpq: int = 480):
    """A symusic score of 8-40 random quarter-grid notes (one track)."""
    from symusic import Note, Score, Track

    rng = np.random.default_rng(seed)
    score = Score(tpq)
    track = Track(program=0)
    for _ in range(rng.integers(8, 41)):
        start, length = int(rng.integers(0, 64)), int(rng.integers(1, 5))
        track.notes.append(Note(start * tpq // 2, length * tpq // 2, int(rng.integers(40, 90)), 80))
    score.tracks.append(track)
    return score


def same_music_other_file(score):
    """The same notes as `score` in a file that differs in everything else: resolution, tempo, tracks."""
    from symusic import Tempo

    other = score.resample(960)  # another tick resolution
    other.tempos.append(Tempo(0, qpm=87.0))
    for track in other.tracks:
        track.name, track.program = "Violin I", 40
        for note in track.notes:
            note.velocity = 33  # dynamics are not the piece either
    half = len(other.tracks[0].notes) // 2  # split over two tracks, in the other order
    second = other.tracks[0].copy()
    second.notes = other.tracks[0].notes[half:]
    other.tracks[0].notes = other.tracks[0].notes[:half]
    other.tracks.insert(0, second)
    return other


def test_content_key_is_the_notes_not_the_file():
    score = random_score(0)
    assert content_key(same_music_other_file(score)) == content_key(score)
    moved = score.copy()
    moved.tracks[0].notes[0].pitch += 1
    assert content_key(moved) != content_key(score)
    assert content_key(score.shift_time(score.ticks_per_quarter)) != content_key(score)  # a beat later


def test_content_key_is_the_same_in_every_process():
    """Golden value: a salted hash (Python's hash()) or a platform's byte order would move pieces between runs."""
    assert content_key(random_score(7))[:12] == GOLDEN_KEY


GOLDEN_KEY = "15b0c830b5d0"  # content_key(random_score(7)) when written


@pytest.mark.parametrize(("val", "test"), [(0.1, 0.1), (0.3, 0.2), (0.45, 0.45), (0.0, 0.5), (0.5, 0.0)])
def test_the_same_music_in_two_files_lands_in_one_split(val, test):
    keys = {}
    for i in range(40):
        score = random_score(i)
        keys[f"a/tune{i}.mid"] = content_key(score)
        keys[f"b/{i:04d}.mid"] = content_key(same_music_other_file(score))
    splits = assign_splits(keys, val, test)
    assert all(splits[f"a/tune{i}.mid"] == splits[f"b/{i:04d}.mid"] for i in range(40))
    by_path = [
        split_of(f"a/tune{i}.mid", val, test) == split_of(f"b/{i:04d}.mid", val, test) for i in range(40)
    ]
    assert not all(by_path) or val + test == 0  # by path, copies would have been split apart


def test_splits_by_content_are_proportional():
    keys = {f"{i}.mid": content_key(random_score(i)) for i in range(3000)}
    splits = list(assign_splits(keys, 0.1, 0.2).values())
    assert abs(splits.count("val") / 3000 - 0.1) < 0.025 and abs(splits.count("test") / 3000 - 0.2) < 0.03
    assert set(assign_splits(keys, 0.0, 0.0).values()) == {"train"}


def test_a_small_folder_still_gets_val_and_test_pieces():
    keys = {f"{i}.mid": f"key{i}" for i in range(12)}
    trainish = [key for key in (f"k{i}" for i in range(100)) if split_of(key, 0.1, 0.1) == "train"]  # by hash
    plain = {piece: split_of(key, 0.01, 0.01) for piece, key in keys.items()}
    assert set(plain.values()) == {"train"}  # 1% of 12 pieces: by the hash alone, none
    splits = assign_splits({**keys, "copy.mid": keys["3.mid"]}, 0.01, 0.01)
    pieces = {
        split: {keys[p.replace("copy", "3")] for p, s in splits.items() if s == split}
        for split in ("val", "test")
    }
    assert len(pieces["val"]) == 2 and len(pieces["test"]) == 1  # val needs two pieces for its z-gap
    assert splits["copy.mid"] == splits["3.mid"]  # a borrowed piece takes its copies along
    for n in range(1, 5):  # train always keeps a piece
        assert "train" in assign_splits({f"{i}.mid": trainish[i] for i in range(n)}, 0.1, 0.1).values()
    assert set(assign_splits(keys, 0.0, 0.0).values()) == {"train"}  # no split asked for: none made
    assert assign_splits({"a.mid": trainish[0]}, 0.1, 0.1) == {"a.mid": "train"}  # train keeps its only piece
    big = {f"{i}.mid": f"key{i}" for i in range(2000)}
    assert assign_splits(big, 0.1, 0.1) == {piece: split_of(key, 0.1, 0.1) for piece, key in big.items()}


def test_truncation_never_leaves_a_position_without_its_note(remi_tokenizer):
    """Chords (two notes on a Position): a cap that falls after a Position's first note could cut
    between that Position and a note of it; the cut moves before the Position instead."""
    tok = remi_tokenizer
    table = token_table(tok)
    chord = [
        tok["Pitch_60"],
        tok["Velocity_63"],
        tok["Duration_1.0.8"],
        tok["Pitch_64"],
        tok["Velocity_63"],
        tok["Duration_1.0.8"],
    ]
    bar = [tok["Bar_None"], tok["TimeSig_4/4"]] + [
        t for k in range(4) for t in [tok[f"Position_{8 * k}"], *chord]
    ]
    ids = np.array(bar * 4)
    for cap in range(10, 60):
        out = cut_windows(ids, table, DataConfig(bars=4, hop_bars=4, max_tokens=cap), hop_bars=4)
        for segment in out.segments:
            assert not table.position[segment[-1]], f"cap {cap}: ends on a Position"
            assert tokens_to_midi(tok, segment.tolist())[1] == 0
