"""RemiGrammar: sequences sampled under the mask decode whole, real data passes it, hand-made cases."""

from __future__ import annotations

import functools
from pathlib import Path

import miditok
import pytest
import torch
from hydra import compose, initialize_config_dir
from symusic import Note, Score, Tempo, TimeSignature, Track

from conftest import chorale_midi
from musicvae.data.config import DataConfig
from musicvae.data.segments import cut_windows
from musicvae.tokens import build_tokenizer
from musicvae.tokens.grammar import RemiGrammar
from musicvae.tokens.tokenize import (
    EOS_ID,
    PAD_ID,
    encode_score,
    load_score,
    prepare_score,
    token_table,
    tokens_to_midi,
)

ROOT = Path(__file__).resolve().parents[2]
# The shipped tokenizers, and one without TimeSig and Velocity tokens (Bar then Position; Pitch Duration).
TOKENIZERS = {
    "remi": ["tokenizer=remi"],
    "remi_programs": ["tokenizer=remi_programs"],
    "remi_bare": ["tokenizer.use_time_signatures=false", "tokenizer.use_velocities=false"],
}
# Chorales with 4/4 → 3/2 (bwv27.6), 12/8 (bwv248.23-2), 3/4 → 4/4 (bwv304), 4/4 (bwv1.6).
CHORALES = ("bwv27.6", "bwv248.23-2", "bwv304", "bwv1.6")


def _cfg(overrides):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(config_name="prepare_data", overrides=list(overrides))


@functools.cache
def grammar_of(name: str) -> tuple[miditok.REMI, RemiGrammar]:
    tokenizer = build_tokenizer(_cfg(TOKENIZERS[name]).tokenizer)
    return tokenizer, RemiGrammar(tokenizer)


def ids_of(tokenizer, *names: str) -> list[int]:
    return [tokenizer.vocab[name] for name in names]


def sample(grammar: RemiGrammar, batch: int, bars, max_new: int, seed: int) -> torch.Tensor:
    """(batch, max_new) ids drawn from softmax(randn logits) under the mask (PAD after EOS)."""
    gen = torch.Generator().manual_seed(seed)
    state = grammar.start(batch, bars=bars, max_new=max_new)
    out = torch.full((batch, max_new), PAD_ID, dtype=torch.long)
    for step in range(max_new):
        allowed = grammar.allowed(state)
        assert allowed.any(1).all(), f"a row has no allowed token at step {step}"
        logits = torch.randn(batch, grammar.vocab_size, generator=gen).masked_fill(~allowed, float("-inf"))
        out[:, step] = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen).squeeze(1)
        grammar.advance(state, out[:, step])
        if state.done.all():
            break
    return out


def remi_problems(tokenizer, ids: list[int]) -> list[str]:
    """What breaks REMI in `ids` (no BOS/EOS), checked on token strings apart from the grammar's code.

    A bar holds numerator * positions-per-beat positions (a beat is the TimeSig's denominator).
    """
    names = [tokenizer[i] for i in ids]
    config = tokenizer.config
    note = ["Pitch"] + ["Velocity"] * config.use_velocities + ["Duration"] * config.using_note_duration_tokens
    problems, i, pos, bar_len = [], 0, None, 4 * config.max_num_pos_per_beat
    if not names or names[0] != "Bar_None":
        problems.append("does not start with a Bar")
    while i < len(names):
        kind, _, value = names[i].partition("_")
        if kind == "Bar":
            pos, i = -1, i + 1
            if config.use_time_signatures:
                if i >= len(names) or not names[i].startswith("TimeSig_"):
                    return [*problems, f"token {i}: no TimeSig after Bar"]
                numerator = int(names[i].split("_")[1].split("/")[0])
                bar_len, i = numerator * config.max_num_pos_per_beat, i + 1
        elif kind == "Position" and pos is not None:
            if not pos < int(value) < bar_len:
                problems.append(f"token {i}: {names[i]} after Position_{pos} in a bar of {bar_len} positions")
            pos, i = int(value), i + 1
            want = (["Program"] if config.use_programs else []) + note
            got = [name.split("_")[0].replace("PitchDrum", "Pitch") for name in names[i : i + len(want)]]
            if got != want:
                return [*problems, f"token {i}: a Position without a whole note ({got})"]
        elif kind in ("Program", "Pitch") and pos is not None and pos >= 0:
            want = (["Program"] if config.use_programs else []) + note
            got = [name.split("_")[0].replace("PitchDrum", "Pitch") for name in names[i : i + len(want)]]
            if got != want:
                return [*problems, f"token {i}: an incomplete note ({got})"]
            i += len(want)
        else:
            return [*problems, f"token {i}: {names[i]} out of place"]
    return problems


# ---------------------------------------------------------------------------------------------
# Sampled sequences are well formed


@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize("bars", [None, 1, 4, 16])
@pytest.mark.parametrize("budget", ["tight", 320])
def test_sampled_sequences_decode_whole_with_the_bars_asked_for(name, bars, budget):
    tokenizer, grammar = grammar_of(name)
    max_new = grammar.tokens_needed(bars) + 8 if budget == "tight" else budget
    for seed in range(3):
        out = sample(grammar, 8, bars, max_new, seed)
        for r, row in enumerate(out.tolist()):
            where = f"{name} bars={bars} max_new={max_new} seed={seed} row {r}"
            assert EOS_ID in row, f"{where}: no EOS within max_new"
            end = row.index(EOS_ID)
            assert set(row[end + 1 :]) <= {PAD_ID}, f"{where}: tokens after EOS"
            body = row[:end]
            assert remi_problems(tokenizer, body) == [], where
            _, dropped = tokens_to_midi(tokenizer, body)
            assert dropped == 0, f"{where}: miditok drops {dropped} tokens"
            n_bars = body.count(grammar.bar_id)
            assert (n_bars == bars) if bars is not None else (n_bars >= 1), f"{where}: {n_bars} bars"


def test_the_smallest_budget_gives_empty_bars_then_eos():
    tokenizer, grammar = grammar_of("remi")
    out = sample(grammar, 8, bars=4, max_new=2 * 4 + 1, seed=0)
    for row in out.tolist():
        names = [tokenizer[i] for i in row]
        assert names[0:8:2] == ["Bar_None"] * 4 and all(n.startswith("TimeSig_") for n in names[1:8:2])
        assert names[8] == "EOS_None"
    with pytest.raises(ValueError, match="4 bar\\(s\\) need at least 9 tokens"):
        grammar.start(2, bars=4, max_new=8)


def test_the_budget_finishes_a_started_note_then_pads_with_empty_bars():
    tokenizer, grammar = grammar_of("remi_programs")
    prompt = ids_of(tokenizer, "Bar_None", "TimeSig_3/4", "Position_4", "Program_0", "Pitch_60")
    state = grammar.start(1, bars=3, max_new=2 + 2 * 2 + 1)  # Velocity Duration, 2 empty bars, EOS
    grammar.feed(state, torch.tensor([prompt]))  # the prompt does not use the budget
    kinds = []
    for _ in range(8):
        allowed = grammar.allowed(state)[0]
        allowed_kinds = {tokenizer[i].split("_")[0] for i in allowed.nonzero()[:, 0].tolist()}
        assert len(allowed_kinds) == 1, f"after {kinds}: {allowed_kinds} allowed, the budget leaves one way"
        kinds.append(allowed_kinds.pop())
        grammar.advance(state, allowed.nonzero()[:1, 0])
    assert kinds == ["Velocity", "Duration", "Bar", "TimeSig", "Bar", "TimeSig", "EOS", "PAD"]
    assert grammar.bars_opened(state).tolist() == [3]
    # a prompt that leaves more to close than the budget holds is refused
    state = grammar.start(1, bars=2, max_new=5)
    with pytest.raises(ValueError, match="prompt row 0 needs 7 more tokens to close, max_new leaves 5"):
        grammar.feed(state, torch.tensor([prompt[:3]]))


# ---------------------------------------------------------------------------------------------
# The mask accepts real data


def chorale_paths(tmp_path_factory) -> list[Path]:
    """The CHORALES as MIDI (data/midi/bach, or exported from music21 now)."""
    return chorale_midi(CHORALES, tmp_path_factory.mktemp("bach"))


def odd_score() -> Score:
    """Two empty bars, a note on the last position of a bar, 4/4 → 3/4 → 6/8 (set mid-bar), drums."""
    tpq = 480
    score = Score(tpq)
    score.tempos.append(Tempo(0, 120.0))
    t34 = 16 * tpq
    t68 = t34 + 7 * tpq
    score.time_signatures.extend([TimeSignature(0, 4, 4), TimeSignature(t34, 3, 4), TimeSignature(t68, 6, 8)])
    piano, strings, drums = Track(program=0), Track(program=40), Track(program=0, is_drum=True)
    piano.notes.extend([Note(8 * tpq, tpq, 60, 80), Note(12 * tpq - tpq // 8, tpq // 8, 64, 80)])
    piano.notes.extend([Note(t34 + 6 * tpq, tpq, 62, 80), Note(t68 + 9 * tpq, tpq, 65, 80)])
    strings.notes.append(Note(8 * tpq, 2 * tpq, 72, 60))
    drums.notes.extend([Note(8 * tpq, tpq // 4, 36, 100), Note(9 * tpq, tpq // 4, 38, 100)])
    score.tracks.extend([piano, strings, drums])
    return score


@pytest.fixture(scope="module")
def real_pieces(tmp_path_factory) -> dict[str, list]:
    """{tokenizer name: token id arrays of the chorales and the odd score}, tracks as the data sees them."""
    paths = chorale_paths(tmp_path_factory)
    pieces = {}
    for name in TOKENIZERS:
        tokenizer, _ = grammar_of(name)
        multi = tokenizer.config.use_programs  # programs kept apart, drums kept
        scores = [load_score(path) for path in paths] + [odd_score()]
        pieces[name] = [encode_score(tokenizer, prepare_score(s, not multi, multi)) for s in scores]
    return pieces


def assert_accepts(tokenizer, grammar: RemiGrammar, ids, bars=None) -> None:
    """Step through `ids` with advance, checking each token against the mask; then EOS must be allowed."""
    state = grammar.start(1, bars=bars)
    for i, token in enumerate(ids.tolist()):
        allowed = grammar.allowed(state)[0]
        before = [tokenizer[t] for t in ids[max(0, i - 6) : i].tolist()]
        assert allowed[token], f"token {i} ({tokenizer[token]}) not allowed after {before}"
        grammar.advance(state, torch.tensor([token]))
    # A window truncated at the token cap may end on a Position (cap_segment cuts before a note start):
    # the grammar never ends a sequence there, so it has no EOS to allow in that one case.
    if not tokenizer[int(ids[-1])].startswith("Position_"):
        assert grammar.allowed(state)[0, EOS_ID], "EOS is not allowed at the end"


@pytest.mark.parametrize("name", TOKENIZERS)
def test_real_pieces_and_their_windows_pass_the_mask(name, real_pieces):
    tokenizer, grammar = grammar_of(name)
    table = token_table(tokenizer)
    whole = DataConfig.from_cfg(_cfg(["data=bach"]).data)  # 4-bar windows every 2 bars
    truncated = DataConfig.from_cfg(_cfg(["data=bach_2bar", "data.max_tokens=40"]).data)
    seen = set()
    for ids in real_pieces[name]:
        seen |= {tokenizer[i].split("_")[0] for i in ids}
        assert_accepts(tokenizer, grammar, ids)
        windows = cut_windows(ids, table, whole, whole.hop_bars)
        for start, end in windows.spans:
            assert_accepts(tokenizer, grammar, ids[start:end], bars=whole.bars)
        for start, end in cut_windows(ids, table, truncated, truncated.hop_bars).spans:
            assert_accepts(tokenizer, grammar, ids[start:end])
    if tokenizer.config.use_programs:
        assert {"Program", "PitchDrum"} <= seen  # the drums were fed too


# ---------------------------------------------------------------------------------------------
# Hand-made cases


def fed(grammar: RemiGrammar, tokenizer, *names: str, bars=None, max_new=None):
    state = grammar.start(1, bars=bars, max_new=max_new)
    grammar.feed(state, torch.tensor([ids_of(tokenizer, *names)]))
    return state


def allowed_names(grammar: RemiGrammar, tokenizer, state) -> set[str]:
    return {tokenizer[i] for i in grammar.allowed(state)[0].nonzero()[:, 0].tolist()}


def test_after_bos_a_bar_after_a_bar_a_time_signature():
    tokenizer, grammar = grammar_of("remi")
    assert allowed_names(grammar, tokenizer, grammar.start(1)) == {"Bar_None"}
    after_bar = allowed_names(grammar, tokenizer, fed(grammar, tokenizer, "Bar_None"))
    assert after_bar == {t for t in tokenizer.vocab if t.startswith("TimeSig_")}


def test_a_note_is_pitch_velocity_duration():
    tokenizer, grammar = grammar_of("remi")
    state = fed(grammar, tokenizer, "Bar_None", "TimeSig_4/4", "Position_0")
    assert {t.split("_")[0] for t in allowed_names(grammar, tokenizer, state)} == {"Pitch"}
    grammar.feed(state, torch.tensor([ids_of(tokenizer, "Pitch_60")]))
    velocities = {t for t in tokenizer.vocab if t.startswith("Velocity_")}
    assert allowed_names(grammar, tokenizer, state) == velocities
    grammar.feed(state, torch.tensor([ids_of(tokenizer, "Velocity_63")]))
    assert {t.split("_")[0] for t in allowed_names(grammar, tokenizer, state)} == {"Duration"}


def test_programs_come_before_their_kind_of_pitch():
    tokenizer, grammar = grammar_of("remi_programs")
    state = fed(grammar, tokenizer, "Bar_None", "TimeSig_4/4", "Position_0")
    assert {t.split("_")[0] for t in allowed_names(grammar, tokenizer, state)} == {"Program"}
    piano = allowed_names(
        grammar, tokenizer, fed(grammar, tokenizer, "Bar_None", "TimeSig_4/4", "Position_0", "Program_0")
    )
    drums = allowed_names(
        grammar, tokenizer, fed(grammar, tokenizer, "Bar_None", "TimeSig_4/4", "Position_0", "Program_-1")
    )
    assert {t.split("_")[0] for t in piano} == {"Pitch"} and {t.split("_")[0] for t in drums} == {"PitchDrum"}


def test_positions_strictly_increase_inside_the_bar():
    tokenizer, grammar = grammar_of("remi")
    note = ("Pitch_60", "Velocity_63", "Duration_1.0.8")
    state = fed(grammar, tokenizer, "Bar_None", "TimeSig_4/4", "Position_5", *note)
    allowed = allowed_names(grammar, tokenizer, state)
    assert "Position_3" not in allowed and "Position_5" not in allowed and "Position_6" in allowed
    assert "Position_31" in allowed and "Position_32" not in allowed  # 4/4: 32 positions
    assert {"Pitch_61", "Bar_None", "EOS_None"} <= allowed  # another note here, a new bar, the end
    state = fed(grammar, tokenizer, "Bar_None", "TimeSig_3/4", "Position_5", *note)
    allowed = allowed_names(grammar, tokenizer, state)
    assert "Position_23" in allowed and "Position_24" not in allowed  # 3/4: 24
    # a new bar starts over at Position_0
    grammar.feed(state, torch.tensor([ids_of(tokenizer, "Bar_None", "TimeSig_12/8")]))
    allowed = allowed_names(grammar, tokenizer, state)
    assert "Position_0" in allowed and "Position_95" in allowed  # 12/8: 96
    # a prompt that goes back in time is refused
    state = fed(grammar, tokenizer, "Bar_None", "TimeSig_4/4", "Position_5", *note)
    with pytest.raises(ValueError, match="token 0 \\(Position_4\\) breaks the REMI grammar"):
        grammar.feed(state, torch.tensor([ids_of(tokenizer, "Position_4")]))


def test_eos_only_once_the_bars_are_there_and_no_bar_after():
    tokenizer, grammar = grammar_of("remi")
    note = ("Position_0", "Pitch_60", "Velocity_63", "Duration_1.0.8")
    state = fed(grammar, tokenizer, "Bar_None", "TimeSig_4/4", *note, bars=2)
    assert {"Bar_None", "Position_1"} <= allowed_names(grammar, tokenizer, state)
    assert "EOS_None" not in allowed_names(grammar, tokenizer, state)
    grammar.feed(state, torch.tensor([ids_of(tokenizer, "Bar_None", "TimeSig_4/4")]))
    assert "EOS_None" in allowed_names(grammar, tokenizer, state)
    assert "Bar_None" not in allowed_names(grammar, tokenizer, state)
    # mid-note, EOS waits for the note to end, whatever the bar count
    state = fed(grammar, tokenizer, "Bar_None", "TimeSig_4/4", "Position_0", "Pitch_60")
    assert "EOS_None" not in allowed_names(grammar, tokenizer, state)


def test_done_rows_allow_only_pad_and_specials_are_never_allowed():
    tokenizer, grammar = grammar_of("remi_programs")
    state = grammar.start(3, bars=1)
    rows = [["Bar_None", "TimeSig_4/4", "EOS_None"], ["Bar_None", "TimeSig_4/4", "Position_0"]]
    rows.append(["Bar_None", "TimeSig_4/4", "Position_0"])
    grammar.feed(state, torch.tensor([ids_of(tokenizer, *row) for row in rows]))
    allowed = grammar.allowed(state)
    assert allowed[0].nonzero()[:, 0].tolist() == [PAD_ID] and state.done.tolist() == [True, False, False]
    specials = [tokenizer.vocab[t] for t in ("PAD_None", "BOS_None", "MASK_None")]
    assert not allowed[1:, specials].any()
    grammar.advance(state, torch.tensor(ids_of(tokenizer, "PAD_None", "Program_0", "Program_-1")))
    assert grammar.allowed(state)[0].nonzero()[:, 0].tolist() == [PAD_ID]
    assert grammar.bars_opened(state).tolist() == [1, 1, 1]


def test_unsupported_tokenizers_are_refused():
    with pytest.raises(ValueError, match="REMI tokenizer only, not TSD"):
        RemiGrammar(miditok.TSD(miditok.TokenizerConfig(special_tokens=["PAD", "BOS", "EOS"])))
    with pytest.raises(ValueError, match="use_rests"):
        RemiGrammar(build_tokenizer(_cfg(["tokenizer.use_rests=true"]).tokenizer))
    _, grammar = grammar_of("remi")
    with pytest.raises(ValueError, match="bars=0"):
        grammar.start(1, bars=0)
