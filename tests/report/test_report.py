"""The report end to end on synthetic sweeps: summary.csv's exact values, old runs, robustness to sparse or
missing files, the figures and the copied samples."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.image import imread

from musicvae.errors import UserError
from musicvae.report import find_runs, read_csv, read_metrics, read_verdict, write_report

ROOT = Path(__file__).resolve().parents[2]
T_975_2 = 4.302653  # Student-t 97.5% quantile, 2 degrees of freedom


def read_summary(report: Path) -> dict[str, dict[str, str]]:
    with open(report / "summary.csv", newline="") as f:
        return {row["group"]: row for row in csv.DictReader(f)}


def mode_beta_seed_sweep(sweep, samples: bool = False) -> None:
    """in_attention and cross_attention × β 0.05, 0.2 × seeds 0-2; rate and distortion move with β."""
    for beta in (0.05, 0.2):
        for seed in (0, 1, 2):
            for mode, shift in (("in_attention", 0.0), ("cross_attention", 1.0)):
                val = sweep.healthy(zgap=0.01 * (1 + shift) + 0.001 * seed, kl=40 * beta + shift + seed,
                                    distortion=70 - 30 * beta - shift + seed)  # fmt: skip
                sweep.run(mode, seed, val, beta=beta, samples=samples)


# ----- summary.csv ------------------------------------------------------------------------------------------


def test_summary_csv_has_one_row_per_group_with_exact_intervals(sweep):
    fid = {"chroma_sim": 0.5, "groove_sim": 0.25, "pitch_class_entropy": {"samples": 3.0, "data": 3.5},
           "note_density": {"samples": 2.0, "data": 4.0}, "n_reconstructions": 8, "n_samples": 8}  # fmt: skip
    for seed, kl in zip((2, 0, 1), (3.0, 1.0, 2.0), strict=True):  # finals 1, 2, 3 by seed
        val = dict(sweep.healthy(), **{"val/kl": [9.0, 10.0 + seed, kl], "val/recon": [1.0 + seed, 2.0, 3.0]})
        sweep.run("in_attention", seed, val, beta=0.2, fidelity=dict(fid, chroma_sim=0.25 * (seed + 1)))
    sweep.run("in_attention", 0, sweep.healthy(kl=5.0), beta=0.05)  # one seed: no interval
    sweep.run("none", 0, sweep.control(), beta=0.05)

    rows = read_summary(write_report(sweep.path))

    assert list(rows) == ["in_attention kl.beta=0.05", "in_attention kl.beta=0.2", "none kl.beta=0.05"]
    a = rows["in_attention kl.beta=0.2"]
    assert (a["mode"], a["kl.beta"], a["n_seeds"], a["seeds"]) == ("in_attention", "0.2", "3", "0 1 2")
    assert (a["context"], a["kl.free_bits"], a["kl.schedule"]) == ("kl.beta=0.2", "0.0", "cyclical")
    # val/kl finals 1, 2, 3: mean 2, std 1, half-width t·1/√3
    half = T_975_2 / math.sqrt(3)
    assert float(a["val/kl_final_mean"]) == 2.0 and a["val/kl_final_n"] == "3"
    assert float(a["val/kl_final_std"]) == pytest.approx(1.0, rel=1e-12)
    assert float(a["val/kl_final_lo"]) == pytest.approx(2.0 - half, rel=1e-6)
    assert float(a["val/kl_final_hi"]) == pytest.approx(2.0 + half, rel=1e-6)
    # best: the max of val/kl (10, 11, 12), the min of val/recon (1, 2, 2), lower being better there
    assert float(a["val/kl_best_mean"]) == 11.0
    assert float(a["val/recon_best_mean"]) == pytest.approx(5 / 3, rel=1e-12)
    assert float(a["val/recon_final_lo"]) == float(a["val/recon_final_hi"]) == 3.0  # equal finals
    # rate and distortion are their own columns
    assert float(a["val/rate_final_mean"]) == 8.0 and float(a["val/distortion_final_mean"]) == 60.0
    # fidelity: same statistics, empty for a group without fidelity.json
    assert float(a["chroma_sim_mean"]) == 0.5 and a["chroma_sim_n"] == "3"
    assert float(a["chroma_sim_lo"]) == pytest.approx(0.5 - 0.25 * half, rel=1e-6)
    assert (
        rows["none kl.beta=0.05"]["chroma_sim_mean"] == ""
        and rows["none kl.beta=0.05"]["chroma_sim_n"] == "0"
    )
    # one seed: the mean, no std and no interval
    one = rows["in_attention kl.beta=0.05"]
    assert (one["val/kl_final_mean"], one["val/kl_final_n"]) == ("5.0", "1")
    assert one["val/kl_final_std"] == one["val/kl_final_lo"] == one["val/kl_final_hi"] == ""
    assert float(rows["none kl.beta=0.05"]["val/zgap_final_mean"]) == 0.0


def test_old_runs_without_rate_and_distortion_still_report(sweep):
    for seed in (0, 1):
        val = sweep.healthy(kl=4.0 + seed, distortion=50.0 + seed)
        del val["val/rate"], val["val/distortion"]  # logged before these existed: -ELBO = distortion + rate
        sweep.run("in_attention", seed, val)
    val = sweep.healthy()
    del val["val/rate"], val["val/distortion"], val["val/elbo"]
    sweep.run("prefix", 0, val)

    report = write_report(sweep.path)
    rows = read_summary(report)

    old = rows["in_attention"]
    assert float(old["val/rate_final_mean"]) == float(old["val/kl_final_mean"]) == 4.5
    assert float(old["val/distortion_final_mean"]) == pytest.approx(50.5, rel=1e-12)
    assert float(old["val/distortion_best_mean"]) == pytest.approx(50.5, rel=1e-12)  # lower is better
    assert (
        rows["prefix"]["val/distortion_final_n"] == "0" and rows["prefix"]["val/distortion_final_mean"] == ""
    )
    assert (report / "rate_distortion.png").stat().st_size > 10_000
    assert "## Verdict" in (report / "summary.md").read_text()


def test_read_metrics_handles_sparse_rows_and_duplicates(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(
        "epoch,step,train/kl,val/kl\n"
        "0,0,1.5,\n"
        "0,9,,2.0\n"
        "0,,3.0,\n"  # no step: skipped
        "0,10,oops,\n"  # unparsable: skipped
        "0,5,1.0,\n"  # out of order
        "1,9,,2.5,extra\n"  # a resumed run re-logs step 9 (and a stray cell)
    )
    series = read_metrics(path)
    assert series == {"train/kl": {0: 1.5, 5: 1.0}, "val/kl": {9: 2.5}}
    assert list(series["train/kl"]) == [0, 5]


# ----- robustness ---------------------------------------------------------------------------------------------


def test_missing_columns_and_runs_without_metrics(sweep, caplog):
    sweep.run("in_attention", 0, {"val/kl": [1.0, 2.0, 3.0]})  # only val/kl logged
    broken = sweep.path / "9_prefix_seed0"
    broken.mkdir()
    (broken / "config.yaml").write_text("seed: 0\nmodel:\n  conditioning:\n    mode: prefix\n")
    (sweep.path / "multirun.yaml").write_text("hydra: {}\n")  # Hydra's sweep-level files are ignored
    (sweep.path / ".submitit").mkdir()

    report = write_report(sweep.path)

    assert "no metrics.csv" in caplog.text and "9_prefix_seed0" in caplog.text
    rows = read_summary(report)
    assert list(rows) == ["in_attention"]  # the broken prefix run is skipped
    assert float(rows["in_attention"]["val/kl_final_mean"]) == 3.0
    assert rows["in_attention"]["val/zgap_final_n"] == "0"
    assert "chroma_sim_mean" not in rows["in_attention"]  # no fidelity.json anywhere
    assert "1 run folder(s) without metrics.csv skipped" in (report / "summary.md").read_text()
    # a second report over the same folder does not mistake report/ for a run
    runs, skipped = find_runs(sweep.path)
    assert [r.mode for r in runs] == ["in_attention"] and [p.name for p in skipped] == ["9_prefix_seed0"]


def test_missing_config_and_broken_fidelity(sweep, caplog):
    run = sweep.run("embedding", 3, sweep.healthy(), fidelity={"chroma_sim": 0.5})
    (run / "config.yaml").unlink()
    (run / "fidelity.json").write_text("{not json")
    runs, _ = find_runs(sweep.path)
    assert (runs[0].mode, runs[0].seed, runs[0].config, runs[0].fidelity) == ("embedding", 3, {}, None)
    assert "fidelity.json" in caplog.text
    rows = read_summary(write_report(sweep.path))
    assert rows["embedding"]["mode"] == "embedding" and rows["embedding"]["kl.beta"] == ""
    assert "chroma_sim_mean" not in rows["embedding"]


def test_no_validation_logged_gives_no_verdict(sweep):
    sweep.run("in_attention", 0, {})
    report = write_report(sweep.path)
    assert "- No validation was logged in any run: no verdict." in read_verdict(report)
    assert "No call to make" in read_verdict(report)
    assert read_csv(report / "verdicts.csv")[1] == []  # the header alone


def test_empty_or_missing_sweep_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no run with a metrics.csv"):
        write_report(tmp_path)
    (tmp_path / "run_without_metrics").mkdir()
    (tmp_path / "run_without_metrics" / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(UserError, match="1 without one"):
        write_report(tmp_path)
    with pytest.raises(UserError, match="not a folder"):
        write_report(tmp_path / "nope")


def _script():
    spec = importlib.util.spec_from_file_location("compare_script", ROOT / "scripts" / "compare.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_script_prints_one_error_line_for_a_missing_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _script().main([str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_script_prints_the_verdict(sweep, capsys):
    sweep.run("in_attention", 0, sweep.healthy())
    _script().main([str(sweep.path)])
    out = capsys.readouterr().out
    assert out.startswith(f"report: {sweep.path / 'report' / 'summary.md'}")
    assert read_verdict(sweep.path / "report") in out


# ----- figures, markdown and samples --------------------------------------------------------------------------


def colour_pixels(png: Path, index: int) -> int:
    """How many pixels of a PNG have the colour of tab10's `index`-th colour (a drawn series)."""
    image = imread(png)[..., :3]
    target = np.array(colormaps["tab10"](index)[:3])
    return int((np.abs(image - target).max(-1) < 0.02).sum())


def test_figures_markdown_and_samples(sweep):
    mode_beta_seed_sweep(sweep, samples=True)

    report = write_report(sweep.path)

    for name in ("kl_curves.png", "zgap.png", "recon.png", "rate_distortion.png", "beta.png"):
        data = (report / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000, name
    # one line per mode through its β points: both colours are drawn, in both panels of beta.png
    for name in ("rate_distortion.png", "beta.png"):
        assert colour_pixels(report / name, 0) > 100 and colour_pixels(report / name, 1) > 100, name
    # samples per group, from the group's first seed, in a path-safe folder
    copied = report / "samples" / "in_attention_kl.beta=0.05"
    assert sorted(p.name for p in copied.iterdir()) == [
        "prior_000.mid", "prior_000.png", "reconstruct_000.mid", "reconstruct_000.png",
    ]  # fmt: skip
    assert (copied / "prior_000.mid").read_bytes() == b"MThd in_attention 0"
    assert len(list((report / "samples").iterdir())) == 4
    md = (report / "summary.md").read_text()
    assert (
        md.index("## Verdict")
        < md.index("## Summary")
        < md.index("## Rate–distortion")
        < md.index("## Curves")
    )
    for link in ("(rate_distortion.png)", "(beta.png)", "(kl_curves.png)", "(zgap.png)", "(recon.png)",
                 "(samples/in_attention_kl.beta=0.05/prior_000.mid)"):  # fmt: skip
        assert link in md
    # table cells: mean [lo, hi] with n; the paired table is there
    row = next(x for x in md.splitlines() if x.startswith("| in_attention kl.beta=0.05 | 3 |"))
    assert row.count("[") >= 8
    assert (
        "### Paired differences" in md
        and "| cross_attention kl.beta=0.2 | in_attention kl.beta=0.2 | 3 |" in md
    )
    rows = read_summary(report)
    assert len(rows) == 4 and all(r["n_seeds"] == "3" for r in rows.values())


def test_a_report_without_rate_or_distortion_draws_no_series(sweep):
    # the contrast to the test above: the same check finds no series where nothing could be drawn
    sweep.run("in_attention", 0, {"val/recon": [2.0, 1.5, 1.4]})
    report = write_report(sweep.path)
    assert colour_pixels(report / "rate_distortion.png", 0) == 0
