"""Tokenizer config, serialization, MIDI → tokens → MIDI round trip, robust decoding."""

import random

import numpy as np
import pytest
from symusic import Score

from musicvae.errors import UserError
from musicvae.tokens import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    build_tokenizer,
    tokenizer_from_dict,
    tokenizer_to_dict,
    tokens_to_midi,
)
from musicvae.tokens.tokenize import encode_score, load_score, prepare_score, token_table


@pytest.fixture
def tokenizer(remi_tokenizer):
    return remi_tokenizer


def notes_in_beats(score: Score) -> list[tuple[float, int, float]]:
    """(onset, pitch, duration) of every note, times in quarter notes, sorted."""
    tpq = score.ticks_per_quarter
    return sorted((n.time / tpq, n.pitch, n.duration / tpq) for t in score.tracks for n in t.notes)


def test_special_ids_and_vocab(compose_cfg):
    tok = build_tokenizer(compose_cfg("prepare_data").tokenizer)
    assert (tok["PAD_None"], tok["BOS_None"], tok["EOS_None"]) == (PAD_ID, BOS_ID, EOS_ID) == (0, 1, 2)
    assert type(tok).__name__ == "REMI"
    assert tok.config.use_time_signatures and not tok.config.use_programs
    assert tok.config.beat_res == {(0, 4): 8, (4, 12): 4}  # string keys of the YAML converted


def test_tokenizer_dict_round_trip(compose_cfg):
    import json

    tok = build_tokenizer(compose_cfg("prepare_data", ["tokenizer=remi_programs"]).tokenizer)
    params = json.loads(json.dumps(tokenizer_to_dict(tok)))  # JSON-able
    again = tokenizer_from_dict(params)
    assert type(again) is type(tok) and again.vocab == tok.vocab and again.config.use_programs


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["tokenizer.name=NoSuchTokenizer"], "unknown tokenizer.name"),
        (["+tokenizer.use_tempo=true"], "unknown tokenizer key"),
        (["tokenizer.name=TSD"], "no Bar tokens"),
        (["tokenizer.special_tokens=[PAD,MASK,BOS,EOS]"], "special_tokens"),
    ],
)
def test_bad_tokenizer_config(compose_cfg, overrides, message):
    with pytest.raises(UserError, match=message):
        build_tokenizer(compose_cfg("prepare_data", overrides).tokenizer)


@pytest.mark.parametrize("numerator", [4, 3])
def test_round_trip_keeps_notes(tokenizer, make_piece, tmp_path, numerator):
    path = make_piece(tmp_path / "p.mid", bars=6, numerator=numerator, programs=(0, 40), drums=True)
    original = prepare_score(load_score(path), merge_tracks=True, keep_drums=False)
    ids = encode_score(tokenizer, original)
    decoded, dropped = tokens_to_midi(tokenizer, [BOS_ID, *ids.tolist(), EOS_ID, PAD_ID])
    assert dropped == 0
    assert len(decoded.tracks) == 1  # merged into one piano part, drums gone
    want, got = notes_in_beats(original), notes_in_beats(decoded)
    assert len(got) == len(want) == 6 * numerator * 2
    for (t0, p0, d0), (t1, p1, d1) in zip(want, got, strict=True):
        assert p0 == p1 and abs(t0 - t1) <= 1 / 8 and abs(d0 - d1) <= 1 / 8
    assert decoded.time_signatures[0].numerator == numerator


def test_decoder_drops_malformed_events(tokenizer):
    v = tokenizer.vocab
    good = [
        v["Bar_None"],
        v["TimeSig_4/4"],
        v["Position_0"],
        v["Pitch_60"],
        v["Velocity_63"],
        v["Duration_1.0.8"],
    ]
    broken = [v["Position_8"], v["Pitch_62"], v["Duration_1.0.8"]]  # Pitch without Velocity: 3 tokens dropped
    stray = [v["Velocity_63"]]  # an attribute without its Pitch
    after_eos = [EOS_ID, v["Pitch_64"], PAD_ID]  # one non-PAD token after EOS
    score, dropped = tokens_to_midi(tokenizer, [BOS_ID, *good, *broken, *stray, *after_eos])
    assert notes_in_beats(score) == [(0.0, 60, 1.0)]
    assert dropped == 2 + 1 + 1  # Pitch_62 + Duration, stray Velocity, Pitch_64 after EOS


def test_decoder_never_crashes(tokenizer, tmp_path):
    rng = random.Random(0)
    n = len(tokenizer)
    for trial in range(150):
        ids = [rng.randrange(n) for _ in range(rng.randrange(0, 80))]
        score, dropped = tokens_to_midi(tokenizer, np.array(ids))
        assert 0 <= dropped <= len(ids)
        path = tmp_path / f"t{trial % 3}.mid"
        score.dump_midi(path)
        Score(path)  # a valid MIDI file


def test_token_table_pitch_lookup(tokenizer):
    table = token_table(tokenizer)
    assert (table.pitch_low, table.pitch_high) == (21, 108)
    assert table.pitch[table.pitch_to_id[60]] == 60
    assert table.bar[tokenizer["Bar_None"]] and not table.bar[tokenizer["Position_0"]]


def test_programs_kept_when_tracks_are_not_merged(compose_cfg, make_piece, tmp_path):
    tok = build_tokenizer(compose_cfg("prepare_data", ["tokenizer=remi_programs"]).tokenizer)
    path = make_piece(tmp_path / "p.mid", bars=4, programs=(0, 40), drums=True)
    original = prepare_score(load_score(path), merge_tracks=False, keep_drums=True)
    ids = encode_score(tok, original).tolist()
    decoded, dropped = tokens_to_midi(tok, ids)
    assert dropped == 0
    programs = sorted((t.program, t.is_drum, len(t.notes)) for t in decoded.tracks)
    assert programs == [(0, False, 16), (0, True, 16), (40, False, 16)]
    program_0 = tok["Program_0"]
    _, dropped = tokens_to_midi(tok, [*ids, program_0])  # a Program with no note after it
    assert dropped == 1
