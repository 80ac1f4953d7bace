"""Per-bar musical attributes read from REMI token ids (their classes: `musicvae.tokens.attribute_classes`).

The attributes follow MuseMorphose (Wu & Yang 2021), after Kawai, Esling & Harada (ISMIR 2020),
whose bar-level "rhythmic intensity" and "polyphony" classes let a user steer a Transformer-VAE bar
by bar. A bar's attributes, in the order of `ATTRIBUTES`:

- rhythm: the share of the bar's slots that hold at least one onset (0 for an empty bar). Two grids
  (`AttributeDefinitions.rhythm`): `positions`, the tokenizer's own (8 per beat: a 4/4 bar has 32, so
  four quarter notes give 4/32), or `sub_beats`, MuseMorphose's sixteenth notes (16 in a 4/4 bar, an
  onset counted in the sixteenth it falls in: 4/16). On music written in sixteenths the two differ by
  the constant factor 2 and give the same classes.
- polyphony, two definitions (`AttributeDefinitions.polyphony`):
  `onsets` (ours): the mean, over the bar's onset positions, of the notes sounding there: struck there,
  or struck earlier (in this bar or an earlier one of the same token sequence) and still held by their
  Duration token. 0 for a bar without onsets. Averaging over onsets keeps polyphony apart from rhythm
  and rests.
  `sub_beats` (MuseMorphose's `compute_polyphonicity`): each note is hit or held on the sixteenths
  from the one its onset falls in for `duration // sixteenth` sixteenths (a note shorter than a
  sixteenth counts nowhere, as there), spilling into the next bars; a bar's value is the mean over
  all its sixteenths, rests included. Notes held over from earlier bars of the same token sequence
  count; the first bar of a segment cannot see notes held into it from before the segment.
- note_density: the number of notes struck in the bar.
- mean_pitch: the mean MIDI pitch of the notes struck in the bar; NaN for a bar without pitched notes
  (there is no pitch to average; a fake neutral value would be a real pitch and skew the quantiles).
  `AttributeBins` ignores NaN when fitting and gives it the middle class (`NAN_CLASS`).
- pitch_range: the highest minus the lowest pitch struck in the bar (0 with fewer than 2 notes).

Drums (PitchDrum tokens, or a Pitch after Program_-1) are onsets for rhythm and notes for
note_density; they have no pitch, so they count neither for polyphony (as onsets or as sounding notes)
nor for mean_pitch and pitch_range.

Time is read the way miditok 3.1's REMI decoder (`_tokens_to_score`) reads it, in ticks: a bar lasts
ticks_per_bar of its TimeSig (a bar without one keeps the previous bar's; 4/4 before any), a Position
is `value * ticks_per_pos`, a Duration `(beat * res + pos) * ticks_per_beat // res` with the bar's
ticks per beat. A bar holds ceil(ticks_per_bar / ticks_per_pos) positions, capped at the vocabulary's
Position count (`musicvae.tokens.tokenize.bar_timing`, which `musicvae.tokens.grammar.RemiGrammar` uses too).

Their classes (quantile bins of a training set) are `musicvae.tokens.attribute_classes`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from miditok.constants import TIME_SIGNATURE

from musicvae.errors import UserError
from musicvae.tokens.tokenize import bar_timing, token_table

RHYTHM_GRIDS = ("positions", "sub_beats")
POLYPHONY_DEFINITIONS = ("onsets", "sub_beats")


@dataclass(frozen=True)
class AttributeDefinitions:
    """How rhythm and polyphony are read from a bar (`data.attributes`; see the module docstring).

    The defaults are ours; `AttributeDefinitions.musemorphose()` reads both as MuseMorphose does. Class
    edges (`AttributeBins`) carry the definitions they were fitted with, so a checkpoint reads its
    attributes the way it trained.
    """

    # share of slots with an onset: positions (the tokenizer's grid) | sub_beats (sixteenths, MuseMorphose);
    # the same classes on music written in sixteenths
    rhythm: str = "positions"
    # onsets: notes sounding, averaged over onset positions (ours) | sub_beats: notes hit or held, averaged
    # over all the bar's sixteenths, rests included (MuseMorphose)
    polyphony: str = "onsets"

    def __post_init__(self):
        for key, allowed in (("rhythm", RHYTHM_GRIDS), ("polyphony", POLYPHONY_DEFINITIONS)):
            if getattr(self, key) not in allowed:
                raise UserError(f"data.attributes.{key}={getattr(self, key)!r} is not one of {', '.join(allowed)}")

    @classmethod
    def musemorphose(cls) -> AttributeDefinitions:
        return cls(rhythm="sub_beats", polyphony="sub_beats")

    @classmethod
    def from_dict(cls, d: dict | None) -> AttributeDefinitions:
        """From `data.attributes` (other keys of that node ignored) or a checkpoint's bins; None: the defaults."""
        d = d or {}
        return cls(**{k: d[k] for k in ("rhythm", "polyphony") if d.get(k) is not None})

    def to_dict(self) -> dict:
        return asdict(self)


ATTRIBUTES = ("rhythm", "polyphony", "note_density", "mean_pitch", "pitch_range")
# Token kinds the reader needs; everything else (Velocity, MASK, ...) is skipped.
_OTHER, _BAR, _TIMESIG, _POSITION, _PITCH, _DRUM, _DURATION, _PROGRAM_DRUM = range(8)


class AttributeReader:
    """Per-bar attributes (see the module doc) of token ids of one tokenizer; built once per tokenizer.

    Reads the vocabulary and the config (time_division, positions per beat, velocities, durations).
    """

    def __init__(self, tokenizer, definitions: AttributeDefinitions | None = None):
        self.definitions = definitions or AttributeDefinitions()
        table = token_table(tokenizer)
        names = [token for token, _ in sorted(tokenizer.vocab.items(), key=lambda item: item[1])]
        config = tokenizer.config
        n_vocab = len(names)
        self.vocab_size = n_vocab
        self._names = names
        self._special = np.asarray(table.special, dtype=bool)

        kind = np.full(n_vocab, _OTHER, dtype=np.int8)
        value = np.zeros(n_vocab, dtype=np.int64)  # Position value or MIDI pitch
        ts_row = np.zeros(n_vocab, dtype=np.int64)  # row of a TimeSig token in the per-metre tables
        signatures = [TIME_SIGNATURE]  # row 0: miditok's default 4/4, for bars before any TimeSig
        durations: list[tuple[int, str]] = []
        for i, (ty, name) in enumerate(zip(table.types, names, strict=True)):
            val = name.split("_", 1)[1] if "_" in name else ""
            if ty == "Bar" and table.bar[i]:
                kind[i] = _BAR
            elif ty == "TimeSig":
                kind[i] = _TIMESIG
                ts_row[i] = len(signatures)
                signatures.append(tuple(int(v) for v in val.split("/")))
            elif ty == "Position":
                kind[i], value[i] = _POSITION, int(val)
            elif ty == "Pitch":
                kind[i], value[i] = _PITCH, int(val)
            elif ty == "PitchDrum":
                kind[i], value[i] = _DRUM, int(val)
            elif ty == "Duration":
                kind[i] = _DURATION
                durations.append((i, val))
            elif ty == "Program" and val == "-1":
                kind[i] = _PROGRAM_DRUM
        self._kind, self._value, self._ts_row = kind, value, ts_row

        # Per metre: ticks per bar, ticks per position, positions in the bar (at least 1: a divisor), ticks per beat.
        timings = [bar_timing(tokenizer, numerator, denominator) for numerator, denominator in signatures]
        self._ts_ticks_bar = np.asarray([t.ticks_per_bar for t in timings], dtype=np.int64)
        self._ts_ticks_pos = np.asarray([t.ticks_per_position for t in timings], dtype=np.int64)
        self._ts_bar_len = np.asarray([max(1, t.positions) for t in timings], dtype=np.int64)
        self._ts_ticks_beat = np.asarray([t.ticks_per_beat for t in timings], dtype=np.int64)
        # MuseMorphose's sub-beats: sixteenth notes (time_division is ticks per quarter note)
        self._sixteenth = max(1, int(tokenizer.time_division) // 4)
        self._ts_sub_beats = np.asarray([max(1, -(-t.ticks_per_bar // self._sixteenth)) for t in timings], dtype=np.int64)

        # Duration ticks of each Duration token for each metre's ticks per beat (miditok's
        # _time_token_to_ticks); a note without its Duration token gets the decoder's default length.
        self._dur_ticks = np.zeros((len(signatures), n_vocab), dtype=np.int64)
        for i, val in durations:
            beat, pos, res = (int(v) for v in val.split("."))
            self._dur_ticks[:, i] = (beat * res + pos) * self._ts_ticks_beat // res
        self._default_dur = (self._ts_ticks_beat * config.default_note_duration).astype(np.int64)
        # Tokens from a Pitch to its Duration: Pitch [Velocity] Duration.
        self._dur_offset = 1 + int(bool(config.use_velocities))
        # Position values fit below this: a (bar, position) pair packs into one int64 key.
        self._pos_span = int(value[kind == _POSITION].max(initial=0)) + 1

    def bar_lengths(self) -> dict[str, int]:
        """Positions per bar for each TimeSig token, by name ('TimeSig_3/4' -> 24 at 8 per beat)."""
        return {
            self._names[i]: int(self._ts_bar_len[self._ts_row[i]])
            for i in np.flatnonzero(self._kind == _TIMESIG)
        }

    def bars(self, ids) -> np.ndarray:
        """Token ids (1-D, no BOS/EOS needed) -> (n_bars, len(ATTRIBUTES)) float64, a row per Bar token.

        Special tokens are dropped and tokens before the first Bar ignored. ValueError for ids that
        are not 1-D or lie outside the vocabulary.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1:
            raise ValueError(f"ids of shape {ids.shape}: expected a 1-D sequence")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size})")
        ids = ids[~self._special[ids]]
        kind = self._kind[ids]
        is_bar = kind == _BAR
        first = int(np.argmax(is_bar)) if is_bar.any() else len(ids)
        ids, kind, is_bar = ids[first:], kind[first:], is_bar[first:]
        n_bars = int(is_bar.sum())
        out = np.zeros((n_bars, len(ATTRIBUTES)), dtype=np.float64)
        if n_bars == 0:
            return out
        bar_of = np.cumsum(is_bar) - 1  # (L,) bar index of each token

        bar_ts = self._bar_metres(ids, kind, bar_of, n_bars)  # (n_bars,) row of each bar's metre
        ticks_pos = self._ts_ticks_pos[bar_ts]
        bar_start = np.concatenate(([0], np.cumsum(self._ts_ticks_bar[bar_ts])[:-1]))

        note_tok = np.flatnonzero((kind == _PITCH) | (kind == _DRUM))
        if note_tok.size == 0:
            return out  # every attribute of an empty bar is 0 but mean_pitch
        note_bar, note_pos, drum, onset, dur = self._notes(ids, kind, is_bar, note_tok, bar_of[note_tok], bar_ts, bar_start)
        end = onset + np.maximum(dur, 1)  # a note sounds at least at its own onset

        # rhythm: distinct onset slots (drums included) over the bar's slots: positions or sixteenths
        sub_beats = self._ts_sub_beats[bar_ts]  # (n_bars,) sixteenths in each bar
        if self.definitions.rhythm == "sub_beats":
            slot, slots = (onset - bar_start[note_bar]) // self._sixteenth, sub_beats
        else:
            slot, slots = note_pos, self._ts_bar_len[bar_ts]
        span = int(slot.max()) + 1
        keys = np.unique(note_bar * span + slot)
        out[:, 0] = np.bincount(keys // span, minlength=n_bars) / slots
        out[:, 2] = np.bincount(note_bar, minlength=n_bars)

        pitched = ~drum
        if not pitched.any():
            out[:, 3] = np.nan
            return out
        p_bar, p_onset, p_end = note_bar[pitched], onset[pitched], end[pitched]
        pitch = self._value[ids[note_tok[pitched]]]

        if self.definitions.polyphony == "sub_beats":
            out[:, 1] = self._polyphony_sub_beats(p_bar, p_onset - bar_start[p_bar], dur[pitched], sub_beats)
        else:
            out[:, 1] = self._polyphony_onsets(p_bar, note_pos[pitched], p_onset, p_end, bar_start, ticks_pos)

        out[:, 3], out[:, 4] = self._pitch_stats(p_bar, pitch, n_bars)
        return out

    def _notes(self, ids, kind, is_bar, note_tok, note_bar, bar_ts, bar_start):
        """Of each note token (Pitch, PitchDrum): its bar, Position (the last Position since the Bar; 0 right
        after the Bar, as the decoder does), whether it is a drum, its onset and duration in ticks."""
        marks = np.maximum.accumulate(np.where((kind == _POSITION) | is_bar, np.arange(len(ids)), 0))[note_tok]
        note_pos = np.where(kind[marks] == _POSITION, self._value[ids[marks]], 0)
        drum = (kind[note_tok] == _DRUM) | (kind[note_tok - 1] == _PROGRAM_DRUM)  # note_tok >= 1: Bar first
        onset = bar_start[note_bar] + note_pos * self._ts_ticks_pos[bar_ts][note_bar]
        dur_at = np.minimum(note_tok + self._dur_offset, len(ids) - 1)
        metre = bar_ts[note_bar]
        dur = np.where(kind[dur_at] == _DURATION, self._dur_ticks[metre, ids[dur_at]], self._default_dur[metre])
        return note_bar, note_pos, drum, onset, dur

    def _bar_metres(self, ids, kind, bar_of, n_bars: int) -> np.ndarray:
        """Each bar's metre (a row of the per-metre tables): its (last) TimeSig, else the previous bar's, else
        4/4 (row 0)."""
        ts_tok = np.flatnonzero(kind == _TIMESIG)
        bar_ts = np.zeros(n_bars, dtype=np.int64)
        has_ts = np.zeros(n_bars, dtype=bool)
        bar_ts[bar_of[ts_tok]] = self._ts_row[ids[ts_tok]]
        has_ts[bar_of[ts_tok]] = True
        last_with = np.maximum.accumulate(np.where(has_ts, np.arange(n_bars), -1))
        return np.where(last_with >= 0, bar_ts[np.maximum(last_with, 0)], 0)

    @staticmethod
    def _pitch_stats(p_bar, pitch, n_bars: int) -> tuple[np.ndarray, np.ndarray]:
        """mean_pitch (NaN without a pitched note) and pitch_range (0 with fewer than 2) of each bar."""
        count = np.bincount(p_bar, minlength=n_bars)
        sums = np.bincount(p_bar, weights=pitch, minlength=n_bars)
        mean = np.divide(sums, count, out=np.full(n_bars, np.nan), where=count > 0)
        high = np.full(n_bars, -1, dtype=np.int64)
        low = np.full(n_bars, 128, dtype=np.int64)
        np.maximum.at(high, p_bar, pitch)
        np.minimum.at(low, p_bar, pitch)
        return mean, np.where(count > 0, high - low, 0)

    def _polyphony_onsets(self, p_bar, p_pos, p_onset, p_end, bar_start, ticks_pos) -> np.ndarray:
        """Ours: at each distinct pitched onset tick T of a bar, the pitched notes with onset <= T < end
        (= struck by T minus ended by T, since a note ends after its onset), averaged over those onsets."""
        n_bars = len(bar_start)
        keys = np.unique(p_bar * self._pos_span + p_pos)
        k_bar = keys // self._pos_span
        times = bar_start[k_bar] + (keys % self._pos_span) * ticks_pos[k_bar]
        sounding = np.searchsorted(np.sort(p_onset), times, side="right") - np.searchsorted(
            np.sort(p_end), times, side="right"
        )
        n_onsets = np.bincount(k_bar, minlength=n_bars)
        total = np.bincount(k_bar, weights=sounding, minlength=n_bars)
        return np.divide(total, n_onsets, out=np.zeros(n_bars), where=n_onsets > 0)

    def _polyphony_sub_beats(self, p_bar, p_offset, p_dur, sub_beats) -> np.ndarray:
        """MuseMorphose's: notes hit or held on each sixteenth of the sequence (a note covers
        `duration // sixteenth` sixteenths from the one its onset falls in), averaged over each bar's."""
        first = np.concatenate(([0], np.cumsum(sub_beats)[:-1]))  # (n_bars,) index of each bar's first sixteenth
        total = int(sub_beats.sum())
        start = np.minimum(first[p_bar] + p_offset // self._sixteenth, total)
        stop = np.minimum(start + p_dur // self._sixteenth, total)
        change = np.zeros(total + 1)
        np.add.at(change, start, 1.0)
        np.add.at(change, stop, -1.0)
        held = np.cumsum(change)[:total]  # notes on each sixteenth
        return np.add.reduceat(held, first) / sub_beats
