"""`python scripts/train.py -m experiment=collapse_compare` end to end at a tiny size: runs, then the report."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# one z per segment, or one per bar: the same report (the segment sweep is slow: the bar one covers the path)
@pytest.mark.parametrize("latent", [pytest.param("segment", marks=pytest.mark.slow), "bar"])
def test_experiment_sweeps_modes_and_seeds_and_writes_the_report(midi_folder, tmp_path, latent):
    sweep = tmp_path / "sweep"
    tiny = [
        "data=midi_dir", f"data.path={midi_folder}", f"paths.data_dir={tmp_path / 'data'}", "data.workers=1",
        "data.batch_size=4", "data.max_tokens=128", "data.val_fraction=0.25", "trainer=debug",
        "trainer.max_steps=4", "trainer.val_check_interval=2", "model.d_model=32", "model.layers=1",
        "model.heads=2", "model.latent_dim=8", "eval.fidelity.n_reconstructions=2", "eval.fidelity.n_samples=2",
        "eval.fidelity.n_files=1", "eval.fidelity.interpolation_steps=2", f"model.latent={latent}",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "scripts/train.py", "-m", "experiment=collapse_compare",
         "model/conditioning=in_attention,none", "seed=0,1", f"hydra.sweep.dir={sweep}", *tiny],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p.name for p in sweep.iterdir() if (p / "metrics.csv").is_file())
    assert runs == ["0_in_attention_seed0", "1_in_attention_seed1", "2_none_seed0", "3_none_seed1"]
    for run in runs:  # identical settings but the mode (and seed)
        text = (sweep / run / "config.yaml").read_text()
        assert "max_steps: 4" in text and "collapse_compare" in text and f"latent: {latent}" in text
    report = sweep / "report"
    rows = {r["mode"]: r for r in csv.DictReader(open(report / "summary.csv"))}
    assert set(rows) == {"in_attention", "none"}
    assert rows["none"]["val/kl_final_n"] == "2"  # two seeds per mode
    assert float(rows["none"]["val/zgap_final_mean"]) == 0.0  # the baseline ignores z exactly
    summary = (report / "summary.md").read_text()
    assert "Verdict" in summary and (report / "kl_curves.png").stat().st_size > 10_000
    assert any((report / "samples" / "in_attention").glob("*.mid"))
    # per group: input 0 | its reconstruction, the path (input 0, 2 steps; input 1 is not kept with n_files=1),
    # one prior sample: 6 players, each with its audio beside it
    page = (report / "index.html").read_text()
    assert page.count("<audio") == 2 * 6 and len(list((report / "samples").glob("*/*.ogg"))) == 2 * 5

