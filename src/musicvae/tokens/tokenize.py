"""MIDI ↔ token ids with miditok.

- `build_tokenizer(tokenizer_cfg)`: the miditok tokenizer described by configs/tokenizer/*.yaml.
- `tokenizer_to_dict(tok)` / `tokenizer_from_dict(d)`: a JSON-able form (a checkpoint stores it)
  and back; the vocabulary round-trips exactly.
- `load_score(path)`: a MIDI file → `symusic.Score`, or `SkipFile` with the reason it is unusable.
- `prepare_score(score, merge_tracks, keep_drums)`: drop drums, merge tracks into one piano part.
- `encode_score(tok, score)`: one stream of token ids (int64 array).
- `tokens_to_midi(tok, ids)`: ids → (`symusic.Score`, number of dropped tokens); never raises.

Special token ids are miditok's defaults for `special_tokens: [PAD, BOS, EOS, MASK]`:
PAD_ID = 0, BOS_ID = 1, EOS_ID = 2 (checked when the tokenizer is built).
"""

from __future__ import annotations

import inspect
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import miditok
import numpy as np
from miditok import MusicTokenizer, TokenizerConfig, TokSequence
from miditok.utils import compute_ticks_per_bar, compute_ticks_per_beat
from miditok.utils import merge_tracks as merge_symusic_tracks
from symusic import Score, Tempo, TimeSignature

from musicvae.config import to_plain_dict
from musicvae.errors import UserError

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIAL_TOKENS = ("PAD_None", "BOS_None", "EOS_None")

# Reasons a file is skipped (manifest.json counts and lists them).
EMPTY, NOT_MIDI, TRUNCATED, CORRUPT = "empty", "not_midi", "truncated", "corrupt"
NO_NOTES, DRUMS_ONLY, UNSUPPORTED_TIME_SIGNATURE = "no_notes", "drums_only", "unsupported_time_signature"

# Extra REMI options miditok keeps in TokenizerConfig.additional_params.
_ADDITIONAL_PARAMS = {"max_bar_embedding", "use_bar_end_tokens", "add_trailing_bars"}
_RANGE_KEYS = ("pitch_range", "drums_pitch_range", "chord_unknown", "tempo_range", "pitch_bend_range")
_NOTE_TYPES = {"Pitch", "PitchDrum", "PitchIntervalTime", "PitchIntervalChord"}


class SkipFile(Exception):
    """A file that cannot give segments; `reason` is one of the constants above."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


# ---------------------------------------------------------------------------------------------
# Building and serializing the tokenizer


def _tokenizer_class(name: str) -> type[MusicTokenizer]:
    cls = getattr(miditok, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, MusicTokenizer)) or cls is MusicTokenizer:
        raise UserError(f"unknown tokenizer.name {name!r}: use a miditok tokenizer class such as REMI")
    return cls


def _beat_range_key(key: Any) -> tuple[int, int]:
    """'0_4' (YAML cannot hold tuple keys) or (0, 4) → (0, 4)."""
    if isinstance(key, str):
        first, last = key.split("_")
        return int(first), int(last)
    return tuple(key)  # type: ignore[return-value]


def tokenizer_config_from_params(params: dict) -> TokenizerConfig:
    """configs/tokenizer/*.yaml keys (minus `name`) → miditok.TokenizerConfig; UserError on unknown keys."""
    params = dict(params)
    allowed = set(inspect.signature(TokenizerConfig.__init__).parameters) - {"self", "kwargs"}
    unknown = sorted(set(params) - allowed - _ADDITIONAL_PARAMS)
    if unknown:
        raise UserError(
            f"unknown tokenizer key(s) {', '.join(unknown)}: not miditok TokenizerConfig arguments"
        )
    for key in ("beat_res", "beat_res_rest"):
        if key in params:
            params[key] = {_beat_range_key(k): int(v) for k, v in params[key].items()}
    for key in _RANGE_KEYS:
        if key in params:
            params[key] = tuple(params[key])
    if "time_signature_range" in params:
        params["time_signature_range"] = {int(k): list(v) for k, v in params["time_signature_range"].items()}
    if params.get("use_note_duration_programs") == "all":
        params["use_note_duration_programs"] = list(range(-1, 128))
    if "chord_maps" in params:
        params["chord_maps"] = {k: tuple(v) for k, v in params["chord_maps"].items()}
    return TokenizerConfig(**params)


def build_tokenizer(tokenizer_cfg: Any) -> MusicTokenizer:
    """The tokenizer described by `cfg.tokenizer` (DictConfig or dict; `name` = miditok class)."""
    params = to_plain_dict(tokenizer_cfg)
    cls = _tokenizer_class(params.pop("name", "REMI"))
    tokenizer = cls(tokenizer_config_from_params(params))
    check_tokenizer(tokenizer)
    return tokenizer


def check_tokenizer(tokenizer: MusicTokenizer) -> None:
    """UserError unless the tokenizer has one flat vocabulary, Bar tokens and PAD/BOS/EOS at 0/1/2."""
    name = type(tokenizer).__name__
    if tokenizer.is_multi_voc:
        raise UserError(f"tokenizer {name} has several vocabularies (embedding pooling): use REMI")
    if not any(token.startswith("Bar_") for token in tokenizer.vocab):
        raise UserError(f"tokenizer {name} has no Bar tokens, which bar-aligned segments need: use REMI")
    ids = [tokenizer.vocab.get(token) for token in SPECIAL_TOKENS]
    if ids != [PAD_ID, BOS_ID, EOS_ID]:
        raise UserError("tokenizer.special_tokens must start with PAD, BOS, EOS (ids 0, 1, 2)")


def tokenizer_to_dict(tokenizer: MusicTokenizer) -> dict:
    """A JSON-able dict (class name + config) that `tokenizer_from_dict` turns back into the tokenizer."""
    return json.loads(json.dumps(tokenizer.to_dict()))


def tokenizer_from_dict(params: dict) -> MusicTokenizer:
    """Inverse of `tokenizer_to_dict` (same class, same vocabulary)."""
    cls = _tokenizer_class(params["tokenization"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        path.write_text(json.dumps(params))
        return cls(params=path)


# ---------------------------------------------------------------------------------------------
# Facts about the vocabulary, as arrays indexed by token id


@dataclass(frozen=True)
class TokenTable:
    """Per-id lookups for a flat vocabulary (all arrays have length vocab_size)."""

    types: tuple[str, ...]  # "Bar", "Position", "Pitch", ...
    bar: np.ndarray  # bool: a Bar token that opens a bar (not Bar_End)
    note: np.ndarray  # bool: a note's pitch token (Pitch, PitchDrum, ...)
    position: np.ndarray  # bool: a Position token (a note must follow it)
    event_start: np.ndarray  # bool: a sequence may be cut just before this token
    special: np.ndarray  # bool: PAD/BOS/EOS/MASK
    pitch: np.ndarray  # int: MIDI pitch of a Pitch token, -1 for other tokens
    pitch_to_id: np.ndarray  # int[128]: id of Pitch_p, -1 where p is outside the vocabulary
    pitch_low: int  # lowest and highest pitch with a Pitch token
    pitch_high: int


def bar_ids(tokenizer: MusicTokenizer) -> tuple[int, ...]:
    """Ids of the tokens that open a bar (REMI: Bar_None): batches count them into bar indices."""
    return tuple(int(i) for i in np.flatnonzero(token_table(tokenizer).bar))


@dataclass(frozen=True)
class BarTiming:
    """How miditok 3.1's REMI decoder (`_tokens_to_score`) times a bar of one time signature, in ticks."""

    ticks_per_bar: int
    ticks_per_beat: int
    ticks_per_position: int
    positions: int  # Position values the bar holds: ceil(bar / position), at most the vocabulary's Positions


def bar_timing(tokenizer: MusicTokenizer, numerator: int, denominator: int) -> BarTiming:
    """The `BarTiming` of a numerator/denominator bar (the grammar mask and the attribute reader share it)."""
    per_bar = compute_ticks_per_bar(TimeSignature(0, numerator, denominator), tokenizer.time_division)
    per_beat = getattr(tokenizer, "_tpb_per_ts", {}).get(denominator)
    per_beat = per_beat or compute_ticks_per_beat(denominator, tokenizer.time_division)
    per_pos = max(1, per_beat // tokenizer.config.max_num_pos_per_beat)
    n_positions = int(token_table(tokenizer).position.sum())
    return BarTiming(per_bar, per_beat, per_pos, min(-(-per_bar // per_pos), n_positions))


def _event_start_types(config: TokenizerConfig) -> set[str]:
    starts = {"Bar", "Position", "Rest", "Tempo", "Chord", "KeySig"}
    if config.use_programs and not config.program_changes:
        return starts | {"Program"}  # a note is Program Pitch Velocity Duration
    return starts | _NOTE_TYPES


def token_table(tokenizer: MusicTokenizer) -> TokenTable:
    """The `TokenTable` of a tokenizer (computed once, kept on the tokenizer object)."""
    cached = getattr(tokenizer, "_musicvae_token_table", None)
    if cached is not None:
        return cached
    tokens = [token for token, _ in sorted(tokenizer.vocab.items(), key=lambda item: item[1])]
    types = tuple(token.split("_", 1)[0] for token in tokens)
    starts = _event_start_types(tokenizer.config)
    pitch = np.array(
        [int(t.split("_")[1]) if ty == "Pitch" else -1 for t, ty in zip(tokens, types, strict=True)]
    )
    pitch_to_id = np.full(128, -1, dtype=np.int64)
    pitch_to_id[pitch[pitch >= 0]] = np.flatnonzero(pitch >= 0)
    special_types = {token.split("_")[0] for token in tokenizer.special_tokens}
    table = TokenTable(
        types=types,
        bar=np.array([ty == "Bar" and t != "Bar_End" for t, ty in zip(tokens, types, strict=True)]),
        note=np.array([ty in _NOTE_TYPES for ty in types]),
        position=np.array([ty == "Position" for ty in types]),
        event_start=np.array([ty in starts for ty in types]),
        special=np.array([ty in special_types for ty in types]),
        pitch=pitch,
        pitch_to_id=pitch_to_id,
        pitch_low=int(pitch[pitch >= 0].min()),
        pitch_high=int(pitch.max()),
    )
    tokenizer._musicvae_token_table = table
    return table


# ---------------------------------------------------------------------------------------------
# MIDI file → token ids


def _chunk_problem(data: bytes) -> str | None:
    """Why the chunk structure of a MIDI file is cut short, or None if it is whole."""
    header_len = int.from_bytes(data[4:8], "big")
    num_tracks = int.from_bytes(data[10:12], "big") if len(data) >= 12 else 0
    pos, tracks = 8 + header_len, 0
    if pos > len(data):
        return "header cut short"
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos + 4 : pos + 8], "big")
        if pos + 8 + length > len(data):
            return f"chunk at byte {pos} runs {pos + 8 + length - len(data)} bytes past the end"
        tracks += data[pos : pos + 4] == b"MTrk"
        pos += 8 + length
    return f"{tracks} of {num_tracks} tracks present" if tracks < num_tracks else None


def load_score(path: Path) -> Score:
    """Read a MIDI file; SkipFile(empty | not_midi | truncated | corrupt) when it cannot be used."""
    data = Path(path).read_bytes()
    if not data:
        raise SkipFile(EMPTY, "0 bytes")
    if not data.startswith(b"MThd"):
        raise SkipFile(NOT_MIDI, "no MThd header")
    try:
        score = Score.from_midi(data)
    except Exception as e:  # symusic raises RuntimeError (and others) on bad data
        problem = _chunk_problem(data)
        if problem:
            raise SkipFile(TRUNCATED, problem) from e
        raise SkipFile(CORRUPT, str(e).splitlines()[0][:200]) from e
    if score.ticks_per_quarter <= 0:
        raise SkipFile(CORRUPT, f"time division {score.ticks_per_quarter}")
    return score


def prepare_score(score: Score, merge_tracks: bool, keep_drums: bool) -> Score:
    """Drop drum tracks (unless keep_drums) and merge the other tracks into one piano part.

    SkipFile(no_notes | drums_only) when nothing is left to tokenize.
    """
    pitched = [t for t in score.tracks if not t.is_drum and len(t.notes)]
    drums = [t for t in score.tracks if t.is_drum and len(t.notes)]
    if not pitched and not drums:
        raise SkipFile(NO_NOTES, "no notes")
    if not pitched and not keep_drums:
        raise SkipFile(DRUMS_ONLY, f"{len(drums)} drum track(s), no pitched notes")
    tracks = pitched
    if merge_tracks and pitched:
        piano = merge_symusic_tracks([t.copy() for t in pitched])
        piano.name, piano.program = "piano", 0
        tracks = [piano]
    out = score.copy()
    out.tracks = tracks + (drums if keep_drums else [])
    return out


def encode_score(tokenizer: MusicTokenizer, score: Score) -> np.ndarray:
    """A prepared score → one stream of token ids (int64[L]); SkipFile if no note survives."""
    if tokenizer.config.use_time_signatures and tokenizer.score_has_time_signatures_not_in_vocab(score):
        signatures = sorted({f"{ts.numerator}/{ts.denominator}" for ts in score.time_signatures})
        raise SkipFile(
            UNSUPPORTED_TIME_SIGNATURE, f"{', '.join(signatures)} (see tokenizer.time_signature_range)"
        )
    seq = tokenizer.encode(score)
    if isinstance(seq, list):  # one sequence per track (use_programs false): prepare_score left one
        if len(seq) != 1:
            raise SkipFile(NO_NOTES, "no notes inside the tokenizer's pitch range")
        seq = seq[0]
    ids = np.asarray(seq.ids, dtype=np.int64)
    if not token_table(tokenizer).note[ids].any():
        raise SkipFile(NO_NOTES, "no notes inside the tokenizer's pitch range")
    return ids


# ---------------------------------------------------------------------------------------------
# Token ids → MIDI


def _note_attributes(config: TokenizerConfig) -> tuple[str, ...]:
    attrs = ("Velocity",) if config.use_velocities else ()
    return attrs + (("Duration",) if config.using_note_duration_tokens else ())


def _strip_specials(ids: list[int], table: TokenTable) -> tuple[list[int], int]:
    """Cut at the first EOS, drop special and out-of-vocabulary ids: (ids, dropped).

    PAD and BOS are framing, not counted; tokens after EOS (PAD aside), MASK and unknown ids are.
    """
    dropped = 0
    if EOS_ID in ids:
        cut = ids.index(EOS_ID)
        dropped += sum(1 for i in ids[cut + 1 :] if i != PAD_ID)
        ids = ids[:cut]
    body = [i for i in ids if 0 <= i < len(table.types) and not table.special[i]]
    framing = sum(1 for i in ids if i in (PAD_ID, BOS_ID))
    return body, dropped + len(ids) - len(body) - framing


def _keep_whole_notes(body: list[int], tokenizer: MusicTokenizer) -> tuple[list[int], int]:
    """Keep a note only with all its tokens ([Program] Pitch Velocity Duration): (ids, dropped)."""
    types = token_table(tokenizer).types
    attrs = _note_attributes(tokenizer.config)
    program_changes = tokenizer.config.program_changes
    clean, dropped, i = [], 0, 0
    while i < len(body):
        kind = types[body[i]]
        if kind in _NOTE_TYPES or (kind == "Program" and not program_changes):
            pitch = i + 1 if kind == "Program" else i
            end = pitch + 1 + len(attrs)
            following = tuple(types[t] for t in body[pitch + 1 : end])
            if pitch < len(body) and types[body[pitch]] in _NOTE_TYPES and following == attrs:
                clean.extend(body[i:end])
                i = end
                continue
            dropped += 1
        elif kind in attrs:
            dropped += 1  # a Velocity/Duration without its Pitch
        else:
            clean.append(body[i])
        i += 1
    return clean, dropped


def clean_token_ids(ids: list[int], tokenizer: MusicTokenizer) -> tuple[list[int], int]:
    """Keep well-formed events only: (clean ids, number of tokens dropped).

    Stops at the first EOS; strips PAD/BOS/MASK; keeps a note only if its Pitch comes with all its
    attribute tokens (Velocity, Duration) and, with programs, after its Program token; drops stray
    attribute tokens. Other tokens (Bar, TimeSig, Position, ...) are kept as they are.
    """
    body, dropped_specials = _strip_specials(ids, token_table(tokenizer))
    clean, dropped_notes = _keep_whole_notes(body, tokenizer)
    return clean, dropped_specials + dropped_notes


def _empty_score(tokenizer: MusicTokenizer) -> Score:
    score = Score(tokenizer.time_division)
    score.tempos.append(Tempo(0, qpm=120.0))
    score.time_signatures.append(TimeSignature(0, 4, 4))
    return score


def tokens_to_midi(tokenizer: MusicTokenizer, ids: Any) -> tuple[Score, int]:
    """Token ids (list/array/tensor, specials allowed) → (symusic.Score, tokens dropped). Never raises.

    The score always writes a valid MIDI file: `score.dump_midi(path)`.
    """
    ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    clean, dropped = clean_token_ids(ids, tokenizer)
    if not clean:
        return _empty_score(tokenizer), dropped
    seq = TokSequence(ids=clean)
    try:
        score = tokenizer.decode(seq if tokenizer.one_token_stream else [seq])
    except Exception:  # a malformation the cleaning above did not foresee: give an empty score
        return _empty_score(tokenizer), dropped + len(clean)
    return score, dropped
