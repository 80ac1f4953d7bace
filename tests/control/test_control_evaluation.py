"""`scripts/evaluate.py control=true`: Spearman ρ of requested vs achieved classes, |ρ| of the others,
fidelity, for attribute-conditioned decoding and for attribute vectors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from musicvae.control import (
    ControlSettings,
    _scores,
    evaluate_control,
    flatten_scores,
    spearman,
    training_data,
)
from musicvae.data.attributes import ATTRIBUTES
from musicvae.inference import load_checkpoint

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


def test_attribute_conditioned_model_is_scored_per_attribute(tiny_attr_run):
    loaded = load_checkpoint(tiny_attr_run["ckpt"])
    settings = ControlSettings(split="train", n_segments=4, classes=(0, 7), batch_size=8)  # the toy test split is tiny
    result = evaluate_control(loaded, training_data(loaded), settings)
    flat = flatten_scores(result)
    for a in ("rhythm", "polyphony"):
        assert f"control.{a}.spearman" in flat and f"control.{a}.others_abs_spearman" in flat
        n = result["control"][a]["n"]  # a row per bar of each segment, per requested class
        assert n % 2 == 0 and n >= 2 * 4 * 2  # 2 classes x 4 segments x their bars (2-4: truncated at 128 tokens)
    rho = flat["control.rhythm.spearman"]
    assert rho is not None and rho > 0  # asking for a higher rhythm class gives a higher one (trained toy)
    assert 0 <= flat["fidelity.chroma_sim"] <= 1 and result["vectors"] == {}


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
    assert "vectors.rhythm.spearman" in result and "control.rhythm.spearman" not in result
    assert (tmp_path / "copy.attributes.pt").is_file()  # vectors=true computed and kept them
    assert "attribute vector" in (tmp_path / "out" / "evaluation.md").read_text()
