"""`scripts/evaluate.py control=true`: Spearman ρ of requested vs achieved classes, |ρ| of the others,
fidelity, for attribute-conditioned decoding and for attribute vectors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from musicvae.errors import UserError
from musicvae.evaluation.control import (
    ControlSettings,
    _Rows,
    _scores,
    absolute_requests,
    control_table,
    evaluate_control,
    flatten_scores,
    shift_requests,
    shuffle_requests,
    spearman,
)
from musicvae.generation.attribute_vectors import training_data
from musicvae.generation.inference import load_checkpoint
from musicvae.tokens.attributes import ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["n_segments=4", "classes=[0,3,7]", "amounts=[-2.0,2.0]", "vector_attributes=[rhythm]", "batch_size=8"]


def test_spearman_is_rank_correlation_and_none_when_undefined():
    assert spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1, 1], [1, 2, 3, 4]) is None and spearman([1, 2], [2, 1]) is None


def test_scores_carry_a_bootstrap_interval_over_segments():
    requested = np.repeat([0, 1, 2, 3], 10)  # 4 requests x 10 segments
    segment = np.tile(np.arange(10), 4)
    achieved = np.zeros((40, len(ATTRIBUTES)))
    achieved[:, 0] = requested  # rhythm follows the request exactly
    achieved[:, 1] = np.random.default_rng(0).integers(0, 8, 40)  # polyphony does not
    s = _scores(list(requested), achieved, segment, "rhythm", ("polyphony",))
    assert s["spearman"] == pytest.approx(1.0) and s["spearman_ci95"] == pytest.approx([1.0, 1.0])
    assert s["segments"] == 10
    lo, hi = s["others_abs_spearman_ci95"]
    assert 0 <= lo <= s["others_abs_spearman"] <= hi <= 1 and hi > lo


def test_attribute_conditioned_model_is_scored_per_protocol_with_baselines(tiny_attr_run):
    loaded = load_checkpoint(tiny_attr_run["ckpt"])
    settings = ControlSettings(split="train", n_segments=4, classes=(0, 7), batch_size=8,  # the toy test split is tiny
                               protocols=("absolute", "shift"), shift_draws=2)  # fmt: skip
    result = evaluate_control(loaded, training_data(loaded), settings)
    flat = flatten_scores(result)
    absolute, shift = result["control"]["absolute"], result["control"]["shift"]
    for a in ("rhythm", "polyphony"):
        for key in ("spearman", "others_abs_spearman", "copy_spearman", "minus_copy", "shuffled_spearman"):
            assert f"control.absolute.{a}.{key}" in flat and f"control.shift.{a}.{key}" in flat
        n = absolute[a]["n"]  # a row per bar of each segment, per requested class
        assert n % 2 == 0 and n >= 2 * 4 * 2  # 2 classes x 4 segments x their bars (2-4: truncated at 128 tokens)
        assert shift[a]["n"] == n  # 2 draws of the same bars
        # absolute requests are the same for every bar, whatever its input: ignoring them scores exactly 0
        assert abs(absolute[a]["copy_spearman"] or 0.0) < 1e-9
        if shift[a]["spearman"] is not None and shift[a]["copy_spearman"] is not None:
            assert shift[a]["minus_copy"] == pytest.approx(shift[a]["spearman"] - shift[a]["copy_spearman"])
    rho = flat["control.absolute.rhythm.spearman"]
    assert rho is not None and rho > 0  # asking for a higher rhythm class gives a higher one (trained toy)
    assert 0 <= flat["fidelity.chroma_sim"] <= 1 and result["vectors"] == {}
    assert result["settings"]["definitions"] == {"rhythm": "positions", "polyphony": "onsets"}
    table = control_table(result)
    assert "protocol shift (MuseMorphose's)" in table and "copy baseline ρ" in table


def _own_classes(n_segments: int = 60, bars: int = 4, seed: int = 0) -> torch.Tensor:
    """(N, K, 2) per-bar classes of rhythm and polyphony, varying between segments and a little within."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 8, (n_segments, 1, 2))
    return torch.from_numpy(np.clip(base + rng.integers(-1, 2, (n_segments, bars, 2)), 0, 7))


def test_shift_requests_are_musemorphoses():
    own = _own_classes()
    ((scored, requests),) = shift_requests(own, ["rhythm", "polyphony"], draws=50, max_shift=3,
                                           rng=np.random.default_rng(1))  # fmt: skip
    assert scored == ("rhythm", "polyphony") and len(requests) == 50
    deltas = []
    for r in requests:
        assert r.shape == own.shape and int(r.min()) >= 0 and int(r.max()) <= 7
        unclipped = (r - own)[(own >= 3) & (own <= 4)]  # bars whose own class leaves room for every δ
        assert int(unclipped.abs().max()) <= 3
        inside = (r > 0) & (r < 7)  # δ is one per segment and attribute: the same in all unclipped bars
        for i in range(own.shape[0]):
            for a in range(2):
                d = (r - own)[i, :, a][inside[i, :, a]]
                assert len(set(d.tolist())) <= 1
        deltas.append((r - own)[:, 0, :])
    deltas = torch.stack(deltas)[(own[:, 0, :] >= 3).unsqueeze(0).expand(50, -1, -1)]
    assert set(deltas.tolist()) == set(range(-3, 4))  # every δ in [-3, 3] drawn
    d = torch.stack([r - own for r in requests])[:, :, 0, :].reshape(-1, 2).double()
    assert abs(np.corrcoef(d[:, 0], d[:, 1])[0, 1]) < 0.1  # the two attributes' δ drawn independently


def test_shuffled_requests_keep_the_distribution_and_lose_the_input():
    own = _own_classes()
    rows = _Rows([4] * own.shape[0], per_bar=True)
    ((_, requests),) = shift_requests(own, ["rhythm", "polyphony"], 4, 3, np.random.default_rng(0))
    mixed = shuffle_requests(requests, rows, [0], np.random.default_rng(0))  # rhythm shuffled, polyphony kept
    asked, got = (torch.cat([rows.take(r) for r in x]) for x in (requests, mixed))
    assert sorted(asked[:, 0].tolist()) == sorted(got[:, 0].tolist()) and torch.equal(asked[:, 1], got[:, 1])
    own_rows = torch.cat([rows.take(own)] * 4)
    assert spearman(asked[:, 0], own_rows[:, 0]) > 0.6 and abs(spearman(got[:, 0], own_rows[:, 0])) < 0.1
    assert torch.equal(rows.put(own, rows.take(own)), own)


def test_copy_baseline_is_the_floor_under_shift_and_zero_under_absolute():
    """Scored on synthetic decoders: one that copies its input, one that does what it is asked."""
    own = _own_classes()
    rows = _Rows([4] * own.shape[0], per_bar=True)
    segment = np.tile(np.repeat(np.arange(own.shape[0]), 4), 4)
    own_rows = np.tile(rows.take(own).numpy(), (4, 1))

    def achieved(classes_rows: np.ndarray) -> np.ndarray:  # (rows, 2) -> (rows, len(ATTRIBUTES))
        out = np.zeros((len(classes_rows), len(ATTRIBUTES)))
        out[:, :2] = classes_rows
        return out

    ((_, shifted),) = shift_requests(own, ["rhythm", "polyphony"], 4, 3, np.random.default_rng(0))
    asked = np.concatenate([rows.take(r).numpy() for r in shifted])
    copier = _scores(asked[:, 0], achieved(own_rows), segment, "rhythm", ("polyphony",), copy=achieved(own_rows))
    follower = _scores(asked[:, 0], achieved(asked), segment, "rhythm", ("polyphony",), copy=achieved(own_rows))
    assert copier["spearman"] > 0.6  # MuseMorphose's protocol rewards copying the input...
    assert copier["minus_copy"] == pytest.approx(0.0) and copier["minus_copy_ci95"] == pytest.approx([0.0, 0.0])
    assert follower["spearman"] == pytest.approx(1.0)  # ...so only the difference says who follows the request
    lo, hi = follower["minus_copy_ci95"]
    assert lo > 0.1 and lo <= follower["minus_copy"] <= hi
    absolute = absolute_requests(own, ["rhythm", "polyphony"], range(8))[0][1]
    asked = np.concatenate([rows.take(r).numpy() for r in absolute])
    own_rows = np.tile(rows.take(own).numpy(), (8, 1))
    segment = np.tile(np.repeat(np.arange(own.shape[0]), 4), 8)
    copier = _scores(asked[:, 0], achieved(own_rows), segment, "rhythm", ("polyphony",), copy=achieved(own_rows))
    assert abs(copier["spearman"]) < 1e-9 and abs(copier["copy_spearman"]) < 1e-9


def test_unknown_protocol_is_one_user_error():
    with pytest.raises(UserError, match=r"control.protocol=\['relative'\]: choose from absolute, shift"):
        ControlSettings(protocols=("relative",))


def test_script_scores_attribute_vectors_of_a_plain_model(tiny_run, tmp_path):
    ckpt = tmp_path / "copy.ckpt"
    ckpt.write_bytes(Path(tiny_run["ckpt"]).read_bytes())
    run = lambda *extra: subprocess.run(  # noqa: E731
        [sys.executable, "scripts/evaluate.py", f"ckpt={ckpt}", "control=true", "split=train", *QUICK, *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    refused = run("vectors=false")  # no attributes, no vectors: nothing to measure
    assert refused.returncode == 2 and "scripts/attributes.py" in refused.stderr and "Traceback" not in refused.stderr
    proc = run("vectors=true", f"out_dir={tmp_path / 'out'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert "vectors.rhythm.spearman" in result and not any(k.startswith("control.") for k in result)
    assert (tmp_path / "copy.attributes.pt").is_file()  # vectors=true computed and kept them
    assert "**Attribute vectors**" in (tmp_path / "out" / "evaluation.md").read_text()
