"""Bar-aligned segments: one MIDI file → windows of `bars` bars, and the split of pieces.

A piece is tokenized once as one stream (REMI: `Bar TimeSig Position Pitch Velocity Duration ...`).
Window k holds bars [k*hop, k*hop + bars): the tokens from its first Bar token to the Bar token that
opens the bar after it, so every segment starts with `Bar` and carries its own time signature.
Only whole windows are kept (the bars after the last whole window are not in any segment). A window
without notes is dropped; one over `max_tokens` is truncated at the last event boundary that fits or
dropped (`data.overlong`). Either way a window is a slice `ids[start:end]` of the piece's stream (no
BOS/EOS: batches add them), which lets the cache store each piece once and windows as spans.
This module is the only place that cuts windows: the cache and `midi_to_segments` (for
reconstruction) both call `segment_file`.

Pieces are split by their content (`content_key`: the notes the model sees), not their file name, so
the same tune in two files (folk tunebooks share tunes) lands in one split.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from miditok import MusicTokenizer
from symusic import Score

from musicvae.data.config import DataConfig
from musicvae.errors import UserError
from musicvae.tokens.tokenize import (
    SkipFile,
    TokenTable,
    encode_score,
    load_score,
    prepare_score,
    token_table,
)

SPLITS = ("train", "val", "test")

# More reasons a file is skipped (besides those of musicvae.tokens.tokenize).
TOO_SHORT, NO_SEGMENTS = "too_short", "no_segments"

KEY_GRID = 480  # content_key's time grid, per quarter note
MIN_KEYS = {"val": 2, "test": 1}  # distinct pieces a split asked for gets even in a small folder


@dataclass
class FileSegments:
    """The windows of one piece: window k is ids[spans[k][0]:spans[k][1]] and starts on bar start_bars[k]."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # the piece's whole stream
    spans: list[tuple[int, int]] = field(default_factory=list)  # in bar order
    start_bars: list[int] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # windows, empty_windows, overlong_truncated, ...
    content: str = ""  # content_key of the piece's notes (segment_file sets it)

    @property
    def segments(self) -> list[np.ndarray]:
        """The windows' token ids (int64 views into `ids`, no BOS/EOS)."""
        return [self.ids[start:end] for start, end in self.spans]


def check_compatible(tokenizer: MusicTokenizer, settings: DataConfig) -> None:
    """UserError if the data settings need one token stream with programs and the tokenizer lacks it."""
    if (not settings.merge_tracks or settings.keep_drums) and not tokenizer.one_token_stream:
        raise UserError(
            "data.merge_tracks=false or data.keep_drums=true needs a tokenizer with programs in one "
            "stream: add tokenizer=remi_programs"
        )


def content_key(score: Score) -> str:
    """A hash of a prepared score's notes: onset, duration (in quarter notes) and pitch, drums apart.

    File names, track names and order, programs, velocities, tempo and other meta events do not count,
    nor does the file's tick resolution: two files of the same music give the same key. Onsets and
    durations are rounded to 1/KEY_GRID of a quarter note, finer than any tokenizer's grid here, so the
    key stays the same when the tokenizer settings change (and with it the split).
    """
    rows = []
    for track in score.tracks:
        notes = track.notes.numpy()
        scale = KEY_GRID / score.ticks_per_quarter
        rows.append(
            np.stack(
                [
                    np.round(notes["time"] * scale),
                    np.round(notes["duration"] * scale),
                    notes["pitch"].astype(np.int64) + (128 if track.is_drum else 0),
                ],
                axis=1,
            ).astype("<i8")
        )
    notes = np.concatenate(rows) if rows else np.zeros((0, 3), dtype="<i8")
    notes = notes[np.lexsort(notes.T[::-1])]  # by onset, then duration, then pitch
    return hashlib.sha1(notes.tobytes()).hexdigest()


def _unit(key: str) -> float:
    """A stable hash of `key` as a number in [0, 1) (sha1: Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2**64


def split_of(key: str, val_fraction: float, test_fraction: float) -> str:
    """'train' | 'val' | 'test' from a stable hash of `key` (the cache passes a piece's content_key)."""
    u = _unit(key)
    if u < test_fraction:
        return "test"
    return "val" if u < test_fraction + val_fraction else "train"


def assign_splits(keys: dict[str, str], val_fraction: float, test_fraction: float) -> dict[str, str]:
    """{piece: split} from each piece's content key (`keys`: {piece: key}) by `split_of`.

    Pieces with the same key share a split. A split asked for (fraction > 0) that the hash leaves with
    fewer than MIN_KEYS[split] keys borrows the train keys nearest its range, with all their pieces,
    while train keeps at least one: a small folder (a dozen files) still validates (val needs two
    pieces: its z-gap pairs a segment with the z of another piece) and tests. A borrowed piece returns
    to train once files added to the folder fill the split; in a folder of hundreds that never happens.
    """
    splits = {piece: split_of(key, val_fraction, test_fraction) for piece, key in keys.items()}
    for split, fraction in (("test", test_fraction), ("val", val_fraction)):
        if fraction <= 0:
            continue
        missing = MIN_KEYS[split] - len({keys[p] for p, s in splits.items() if s == split})
        # the lowest hashes of train: the nearest to the val and test ranges, which lie below it
        train = sorted({keys[p] for p, s in splits.items() if s == "train"}, key=_unit)
        borrow = set(train[: max(0, min(missing, len(train) - 1))])  # train keeps a key
        for piece, key in keys.items():
            if key in borrow:
                splits[piece] = split
    return splits


def window_starts(num_bars: int, bars: int, hop_bars: int) -> range:
    """First bar of each whole window of `bars` bars, every `hop_bars` bars."""
    return range(0, num_bars - bars + 1, hop_bars)


def cap_segment(
    ids: np.ndarray, table: TokenTable, max_tokens: int, overlong: str
) -> tuple[np.ndarray | None, str]:
    """Apply the token cap: (ids or None if dropped, 'ok' | 'overlong_truncated' | 'overlong_dropped').

    Truncation cuts just before the last event start (Bar, Position, a note, ...) at or below the cap,
    so no note loses its Velocity/Duration, and never right after a Position (REMI's grammar wants a
    note there: the grammar mask of decoding would never end a segment that way).
    """
    if len(ids) <= max_tokens:
        return ids, "ok"
    if overlong == "drop":
        return None, "overlong_dropped"
    cuts = np.flatnonzero(table.event_start[ids[1 : max_tokens + 1]]) + 1
    cuts = cuts[~table.position[ids[cuts - 1]]]  # not right after a Position: it would end without its note
    if len(cuts) == 0 or not table.note[ids[: cuts[-1]]].any():
        return None, "overlong_dropped"
    return ids[: cuts[-1]], "overlong_truncated"


def cut_windows(ids: np.ndarray, table: TokenTable, settings: DataConfig, hop_bars: int) -> FileSegments:
    """Token ids of a whole piece → its bar-aligned windows (see the module docstring)."""
    bar_pos = np.flatnonzero(table.bar[ids])
    if len(bar_pos) < settings.bars:
        raise SkipFile(TOO_SHORT, f"{len(bar_pos)} bar(s), segments need {settings.bars}")
    bounds = np.append(bar_pos, len(ids))
    out = FileSegments(ids=ids)
    for start in window_starts(len(bar_pos), settings.bars, hop_bars):
        first = int(bounds[start])
        window = ids[first : bounds[start + settings.bars]]
        out.counts["windows"] += 1
        if not table.note[window].any():
            out.counts["empty_windows"] += 1
            continue
        window, status = cap_segment(window, table, settings.max_tokens, settings.overlong)
        if status != "ok":
            out.counts[status] += 1
        if window is not None:  # the cap keeps a prefix: still a slice of the piece
            out.spans.append((first, first + len(window)))
            out.start_bars.append(start)
    return out


def segment_file(
    path: Path, tokenizer: MusicTokenizer, settings: DataConfig, hop_bars: int | None = None
) -> FileSegments:
    """One MIDI file → its windows; SkipFile(reason) when it gives none."""
    score = prepare_score(load_score(path), settings.merge_tracks, settings.keep_drums)
    ids = encode_score(tokenizer, score)
    result = cut_windows(ids, token_table(tokenizer), settings, hop_bars or settings.hop_bars)
    if not result.spans:
        raise SkipFile(NO_SEGMENTS, f"{result.counts['windows']} window(s), none with notes within the cap")
    result.content = content_key(score)
    return result


def midi_to_windows(
    path: str | Path, tokenizer: MusicTokenizer, data_cfg: Any, hop_bars: int | None = None
) -> FileSegments:
    """One MIDI file → its bar-aligned windows in order (token arrays, no BOS/EOS) and their start bars.

    Same windows as the cache. `hop_bars` overrides `data.hop_bars`: pass `data.bars` for
    non-overlapping windows, e.g. to reconstruct a long piece window by window.
    Raises UserError naming the file if it is unreadable or gives no segment.
    """
    settings = DataConfig.from_cfg(data_cfg)
    check_compatible(tokenizer, settings)
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return segment_file(path, tokenizer, settings, hop_bars)
    except SkipFile as e:
        raise UserError(f"{path}: cannot be used ({e})") from None


def midi_to_segments(
    path: str | Path, tokenizer: MusicTokenizer, data_cfg: Any, hop_bars: int | None = None
) -> list[list[int]]:
    """`midi_to_windows`' token ids as lists."""
    return [segment.tolist() for segment in midi_to_windows(path, tokenizer, data_cfg, hop_bars).segments]
