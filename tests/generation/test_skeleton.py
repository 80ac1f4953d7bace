"""The input's skeleton kept: a piece reconstructed (or edited) from its input carries the input's time
signature on every bar and its bar count, through the grammar mask (`RemiGrammar.start(time_sigs=...)`).

Checked on the mask alone (random draws among the allowed tokens), then end to end: pieces in 3/4, 4/4 and
one that changes metre, reconstructed by `sample()` from tiny checkpoints trained on 4/4 music, the written
MIDI read back with pretty_midi."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch

from musicvae.generation.decode import bar_time_sigs
from musicvae.generation.inference import token_rules
from musicvae.generation.modes import SampleRequest, sample
from musicvae.tokens.grammar import RemiGrammar
from musicvae.tokens.tokenize import EOS_ID


def draw_under_mask(grammar: RemiGrammar, time_sigs, bars: int, seed: int = 0, steps: int = 400) -> list[list[int]]:
    """Rows drawn uniformly among the tokens the mask allows, each step, until EOS (the mask alone decides)."""
    rows = len(time_sigs) if time_sigs is not None else 8
    state = grammar.start(rows, bars=bars, max_new=steps, time_sigs=time_sigs)
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(rows, 0, dtype=torch.long)
    for _ in range(steps):
        weights = grammar.allowed(state).float()
        nxt = torch.multinomial(weights, 1, generator=gen).squeeze(1)
        grammar.advance(state, nxt)
        out = torch.cat([out, nxt[:, None]], 1)
        if state.done.all():
            break
    return [row[: row.index(EOS_ID)] for row in out.tolist()]


def test_the_mask_gives_every_bar_the_skeletons_time_signature(remi_tokenizer):
    grammar = RemiGrammar(remi_tokenizer)
    rules = token_rules(remi_tokenizer)
    ts = {name: remi_tokenizer.vocab[f"TimeSig_{name}"] for name in ("3/4", "4/4", "6/8")}
    skeletons = [[ts["3/4"]] * 6, [ts["4/4"]] * 6, [ts["4/4"]] * 3 + [ts["3/4"]] * 3, [ts["6/8"], -1, -1, -1, -1, ts["3/4"]]]
    for row, skeleton in zip(draw_under_mask(grammar, skeletons, bars=6), skeletons, strict=True):
        got = bar_time_sigs(row, rules)
        assert len(got) == 6
        assert [g for g, want in zip(got, skeleton, strict=True) if want >= 0] == [w for w in skeleton if w >= 0]
    # without a skeleton the same draws wander: the check above can fail
    free = [bar_time_sigs(row, rules) for row in draw_under_mask(grammar, None, bars=6)]
    assert any(len(set(row)) > 1 for row in free)


def test_a_skeleton_that_is_not_time_signatures_is_refused(remi_tokenizer):
    grammar = RemiGrammar(remi_tokenizer)
    with pytest.raises(ValueError, match="not a TimeSig"):
        grammar.start(1, bars=2, time_sigs=[[remi_tokenizer.vocab["Bar_None"], -1]])
    with pytest.raises(ValueError, match="expected"):
        grammar.start(2, bars=2, time_sigs=[[-1, -1]])


def metre_piece(path: Path, metres: list[tuple[int, int]], seed: int = 0) -> Path:
    """One bar per entry of `metres` (numerator, bars), quarter notes on every beat, a TimeSignature at each change."""
    rng = np.random.default_rng(seed)
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=0)
    t = 0.0
    for numerator, bars in metres:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(numerator, 4, t))
        for _ in range(bars * numerator):
            piano.notes.append(pretty_midi.Note(80, int(rng.integers(55, 75)), t, t + 0.5))
            t += 0.5
    pm.instruments.append(piano)
    pm.write(str(path))
    return path


def metre_per_bar(path: Path) -> list[tuple[int, int]]:
    """(numerator, denominator) in force at each of the MIDI's downbeats, as pretty_midi reads the file."""
    pm = pretty_midi.PrettyMIDI(str(path))
    changes = sorted(pm.time_signature_changes, key=lambda ts: ts.time)
    out = []
    for downbeat in pm.get_downbeats():
        current = [ts for ts in changes if ts.time <= downbeat + 1e-6][-1]
        out.append((current.numerator, current.denominator))
    return out


PIECES = {  # name: [(numerator, bars)]
    "three_four": [(3, 8)],
    "four_four": [(4, 8)],
    "metre_change": [(4, 4), (3, 4)],
}


@pytest.mark.parametrize("run", ["tiny_bar_run", "tiny_run"])
@pytest.mark.parametrize("name", list(PIECES))
def test_reconstruct_keeps_the_inputs_metre_and_bar_count(run, name, request, tmp_path):
    ckpt = request.getfixturevalue(run)["ckpt"]
    piece = metre_piece(tmp_path / f"{name}.mid", PIECES[name])
    want = [(n, 4) for n, bars in PIECES[name] for _ in range(bars)]
    summary = sample(SampleRequest(ckpt=str(ckpt), mode="reconstruct", input=str(piece), out_dir=str(tmp_path / "out"),
                                   piano_roll=False, audio=False))  # fmt: skip
    (result,) = summary["results"]
    assert result["bars"] == len(want)  # the input's bar count (the tokens' Bar count)
    out = tmp_path / "out" / result["file"]
    got = metre_per_bar(out)
    assert got == want[: len(got)] and len(got) >= len(want) - 1  # pretty_midi stops at the last note


def test_without_the_skeleton_a_four_four_model_loses_three_four(tiny_bar_run, tmp_path):
    """The control: the tiny model, trained on 4/4 only, draws 4/4 bars when it may (skeleton=false)."""
    piece = metre_piece(tmp_path / "three.mid", [(3, 8)])
    summary = sample(SampleRequest(ckpt=str(tiny_bar_run["ckpt"]), mode="reconstruct", input=str(piece),
                                   out_dir=str(tmp_path / "out"), piano_roll=False, audio=False,
                                   skeleton=False))  # fmt: skip
    got = metre_per_bar(tmp_path / "out" / summary["results"][0]["file"])
    assert any(metre != (3, 4) for metre in got)
