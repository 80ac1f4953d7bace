"""The comparison report on synthetic sweeps: exact table values, a verdict that follows the numbers,
robustness to sparse/missing metrics, the figures and the copied samples."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import pytest

from musicvae.errors import UserError
from musicvae.report import (
    KL_COLLAPSE_NATS,
    ZGAP_COLLAPSE_NATS,
    collapsed_modes,
    find_runs,
    read_metrics,
    read_verdict,
    summarize,
    verdict_text,
    write_report,
)

ROOT = Path(__file__).resolve().parents[2]
VAL_STEPS = (10, 20, 30)


# ----- synthetic sweeps ---------------------------------------------------------------------------


def write_metrics(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """A CSVLogger-style metrics.csv: epoch, step, then the metric columns; missing cells left empty."""
    keys = columns or sorted({k for row in rows for k in row} - {"epoch", "step"})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "step", *keys], restval="")
        writer.writeheader()
        writer.writerows({"epoch": 0, **row} for row in rows)


def write_run(
    sweep: Path,
    mode: str,
    seed: int,
    val: dict[str, list[float]],
    train_kl: float = 1.0,
    fidelity: dict | None = None,
    samples: bool = True,
) -> Path:
    """A run folder: config.yaml, a sparse metrics.csv (train rows every 5 steps, val rows at VAL_STEPS
    with the given per-validation values), optionally fidelity.json and samples/."""
    run = sweep / f"{len(list(sweep.iterdir()))}_{mode}_seed{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"seed: {seed}\nmodel:\n  conditioning:\n    mode: {mode}\n")
    rows = [
        {"step": s, "train/kl": train_kl + 0.1 * (s % 10), "train/beta": min(1.0, s / 20), "train/loss": 3.0}
        for s in range(0, 35, 5)
    ]
    rows += [{"step": s, **{k: v[i] for k, v in val.items()}} for i, s in enumerate(VAL_STEPS)]
    write_metrics(run / "metrics.csv", sorted(rows, key=lambda r: r["step"]))
    if fidelity is not None:
        (run / "fidelity.json").write_text(json.dumps(fidelity))
    if samples:
        (run / "samples").mkdir()
        for kind in ("prior", "reconstruct"):
            (run / "samples" / f"{kind}_000.mid").write_bytes(f"MThd {mode} {seed}".encode())
            (run / "samples" / f"{kind}_000.png").write_bytes(b"\x89PNG fake")
        (run / "samples" / "notes.txt").write_text("not a sample")
    return run


def healthy(kl: float = 20.0) -> dict[str, list[float]]:
    """Validation values of a mode whose decoder uses z."""
    return {
        "val/kl": [kl / 2, kl, kl],
        "val/au": [10, 30, 30],
        "val/mi": [1.0, 2.0, 2.0],
        "val/zgap": [0.2, 0.5, 0.5],
        "val/recon": [2.0, 1.5, 1.4],
        "val/ppl": [7.4, 4.5, 4.1],
        "val/recon_acc": [0.4, 0.6, 0.65],
    }


def collapsed() -> dict[str, list[float]]:
    """Validation values of a mode whose KL went to ~0 and whose decoder ignores z."""
    return {
        "val/kl": [3.0, 0.2, 0.01],
        "val/au": [2, 0, 0],
        "val/mi": [0.1, 0.0, 0.0],
        "val/zgap": [0.01, 0.001, 0.0005],
        "val/recon": [2.2, 2.0, 1.9],
        "val/ppl": [9.0, 7.4, 6.7],
        "val/recon_acc": [0.3, 0.4, 0.42],
    }


def read_summary(report: Path) -> dict[str, dict[str, str]]:
    with open(report / "summary.csv", newline="") as f:
        return {row["mode"]: row for row in csv.DictReader(f)}


def verdict_line(verdict: str, label: str) -> str:
    """The bullet of the verdict that starts with **label**."""
    (line,) = [x for x in verdict.splitlines() if x.startswith(f"- **{label}")]
    return line


def leader(verdict: str, label: str) -> str:
    """The mode a leader bullet names first: '- **label** (...): <mode>, value ...'."""
    return verdict_line(verdict, label).split("): ", 1)[1].split(",", 1)[0]


# ----- the table ------------------------------------------------------------------------------------


def test_summary_csv_values_are_exact(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    a0 = dict(healthy(), **{"val/kl": [5.0, 8.0, 6.0], "val/recon": [3.0, 2.0, 2.5]})
    a1 = dict(healthy(), **{"val/kl": [4.0, 9.0, 7.0], "val/recon": [3.0, 1.0, 4.0]})
    b0 = dict(collapsed(), **{"val/kl": [1.0, 0.5, 0.25]})
    b1 = dict(collapsed(), **{"val/kl": [2.0, 0.25, 0.75]})
    del b1["val/zgap"]  # a column missing entirely from one run
    fid = {"chroma_sim": 0.5, "groove_sim": 0.25, "pitch_class_entropy": {"samples": 3.0, "data": 3.5},
           "note_density": {"samples": 2.0, "data": 4.0}, "n_reconstructions": 8, "n_samples": 8}  # fmt: skip
    # written cross_attention first: the table still follows the fixed mode order
    write_run(sweep, "cross_attention", 1, b1)
    write_run(sweep, "cross_attention", 0, b0)
    write_run(sweep, "in_attention", 0, a0, fidelity=fid)
    write_run(sweep, "in_attention", 1, a1, fidelity=dict(fid, chroma_sim=0.75, groove_sim=None))

    table = read_summary(write_report(sweep))

    assert list(table) == ["in_attention", "cross_attention"]
    a, b = table["in_attention"], table["cross_attention"]
    assert (a["n_seeds"], a["seeds"], b["seeds"]) == ("2", "0 1", "0 1")
    # val/kl, in_attention: finals 6, 7; bests 8, 9
    assert float(a["val/kl_final_mean"]) == 6.5
    assert float(a["val/kl_final_std"]) == pytest.approx(math.sqrt(0.5), rel=1e-12)
    assert a["val/kl_final_n"] == "2"
    assert float(a["val/kl_best_mean"]) == 8.5
    assert float(a["val/kl_best_std"]) == pytest.approx(math.sqrt(0.5), rel=1e-12)
    # val/recon: lower is better; finals 2.5, 4; bests (min) 2, 1
    assert float(a["val/recon_final_mean"]) == 3.25
    assert float(a["val/recon_final_std"]) == pytest.approx(math.sqrt(1.125), rel=1e-12)
    assert float(a["val/recon_best_mean"]) == 1.5
    # cross_attention val/kl: finals 0.25, 0.75; bests 1, 2
    assert float(b["val/kl_final_mean"]) == 0.5
    assert float(b["val/kl_best_mean"]) == 1.5
    # val/zgap logged by one seed only: n = 1 and no std
    assert b["val/zgap_final_n"] == "1" and float(b["val/zgap_final_mean"]) == 0.0005
    assert b["val/zgap_final_std"] == ""
    assert float(b["val/zgap_best_mean"]) == 0.01
    # val/au / recon_acc are the same in both seeds: std 0
    assert float(a["val/au_final_mean"]) == 30 and float(a["val/au_final_std"]) == 0
    assert float(a["val/recon_acc_best_mean"]) == 0.65
    # fidelity: a null value counts as missing; modes without fidelity.json are empty
    assert float(a["chroma_sim_mean"]) == 0.625 and a["chroma_sim_n"] == "2"
    assert float(a["groove_sim_mean"]) == 0.25 and a["groove_sim_n"] == "1"
    assert float(a["pitch_class_entropy_data_mean"]) == 3.5
    assert float(a["note_density_samples_mean"]) == 2.0
    assert b["chroma_sim_mean"] == "" and b["chroma_sim_n"] == "0"


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


# ----- the verdict ------------------------------------------------------------------------------------


@pytest.mark.parametrize("swap", [False, True])
def test_verdict_follows_the_numbers(tmp_path, swap):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    keeps, drops = ("cross_attention", "in_attention") if swap else ("in_attention", "cross_attention")
    for seed in (0, 1):
        write_run(sweep, keeps, seed, healthy(kl=20.0 + seed))
        write_run(sweep, drops, seed, collapsed())

    report = write_report(sweep)
    verdict = read_verdict(report)

    assert leader(verdict, "Most KL kept") == keeps
    assert leader(verdict, "Most active units") == keeps
    assert leader(verdict, "Largest z-gap") == keeps
    line = verdict_line(verdict, "Collapsed")
    assert drops in line and keeps not in line
    assert verdict_line(verdict, "Not collapsed").endswith(keeps)
    assert "Caveat" not in verdict  # 2 seeds each, far apart
    md = (report / "summary.md").read_text()
    assert md.index("## Verdict") < md.index("| mode |")  # the verdict comes before the table


def _row(mode, kl, kl_std=math.nan, zgap=math.nan, n_seeds=2):
    """A minimal `summarize` row."""
    nan = math.nan
    return {
        "mode": mode, "n_seeds": n_seeds,
        "val/kl_final_mean": kl, "val/kl_final_std": kl_std,
        "val/zgap_final_mean": zgap, "val/zgap_final_std": nan,
        "val/au_final_mean": nan, "val/au_final_std": nan,
    }  # fmt: skip


def test_verdict_caveats_and_collapse_rule():
    # within the seed spread: 10 ± 3 vs 8 ± 3
    text = verdict_text([_row("prefix", 8.0, 3.0, zgap=0.2), _row("embedding", 10.0, 3.0, zgap=0.3)])
    assert leader(text, "Most KL kept") == "embedding"
    assert "within the seed spread" in text
    # one seed: said so
    assert "one seed only for every mode" in verdict_text([_row("none", 5.0, n_seeds=1)])
    # the rule: low KL, or a decoder that ignores z despite KL (zgap ~ 0); zgap missing -> KL alone
    rows = [
        _row("a", KL_COLLAPSE_NATS / 2, zgap=0.3),
        _row("b", 50.0, zgap=ZGAP_COLLAPSE_NATS / 2),
        _row("c", 50.0, zgap=0.3),
        _row("d", 50.0),
    ]
    assert set(collapsed_modes(rows)) == {"a", "b"}
    # a call within one seed std of the threshold is flagged
    assert "the collapse call for e is within one seed std" in verdict_text(
        [_row("e", 0.3, 0.3), _row("f", 9.0, 0.3)]
    )
    every = verdict_text([_row("a", 0.01), _row("b", 0.02)])
    assert "every mode collapsed" in every
    assert "no verdict" in verdict_text([_row("a", math.nan)])
    # nothing collapsed: no mode is named (not even the mode called "none"); a mode without validation is not judged
    text = verdict_text([_row("none", 5.0, zgap=0.2), _row("prefix", math.nan)])
    assert verdict_line(text, "Collapsed").endswith(": no mode")
    assert verdict_line(text, "Not judged").endswith("prefix")


# ----- robustness ----------------------------------------------------------------------------------------


def test_missing_columns_and_runs_without_metrics(tmp_path, caplog):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    write_run(sweep, "in_attention", 0, {"val/kl": [1.0, 2.0, 3.0]})  # only val/kl logged
    broken = sweep / "9_prefix_seed0"
    broken.mkdir()
    (broken / "config.yaml").write_text("seed: 0\nmodel:\n  conditioning:\n    mode: prefix\n")
    (sweep / "multirun.yaml").write_text("hydra: {}\n")  # Hydra's sweep-level files are ignored
    (sweep / ".submitit").mkdir()

    report = write_report(sweep)

    assert "no metrics.csv" in caplog.text and "9_prefix_seed0" in caplog.text
    table = read_summary(report)
    assert list(table) == ["in_attention"]  # the broken prefix run is skipped
    assert float(table["in_attention"]["val/kl_final_mean"]) == 3.0
    assert table["in_attention"]["val/zgap_final_n"] == "0"
    assert "chroma_sim_mean" not in table["in_attention"]  # no fidelity.json anywhere
    md = (report / "summary.md").read_text()
    assert "1 run folder(s) without metrics.csv skipped" in md
    assert verdict_line(read_verdict(report), "Largest z-gap").endswith("not logged in any run")
    # a second report over the same folder does not mistake report/ for a run
    runs, skipped = find_runs(sweep)
    assert [r.mode for r in runs] == ["in_attention"] and [p.name for p in skipped] == ["9_prefix_seed0"]


def test_mode_and_seed_fall_back_to_the_folder_name(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    run = write_run(sweep, "embedding", 3, healthy())
    (run / "config.yaml").unlink()
    runs, _ = find_runs(sweep)
    assert (runs[0].mode, runs[0].seed) == ("embedding", 3)
    assert summarize(runs)[0]["mode"] == "embedding"


def test_empty_or_missing_sweep_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no run with a metrics.csv"):
        write_report(tmp_path)
    (tmp_path / "run_without_metrics").mkdir()
    (tmp_path / "run_without_metrics" / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(UserError, match="1 without one"):
        write_report(tmp_path)
    with pytest.raises(UserError, match="not a folder"):
        write_report(tmp_path / "nope")


def test_script_prints_one_error_line_for_a_missing_folder(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("compare_script", ROOT / "scripts" / "compare.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit) as exit_info:
        script.main([str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


# ----- figures and samples -----------------------------------------------------------------------------


def test_pngs_written_and_samples_copied(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    write_run(sweep, "in_attention", 1, healthy(21.0))
    write_run(sweep, "in_attention", 0, healthy(20.0))
    write_run(sweep, "none", 0, collapsed())
    write_run(sweep, "prefix", 0, healthy(5.0), samples=False)
    report = write_report(sweep)

    for name in ("kl_curves.png", "zgap.png", "recon.png"):
        data = (report / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000, name
    copied = report / "samples" / "in_attention"
    assert sorted(p.name for p in copied.iterdir()) == [
        "prior_000.mid", "prior_000.png", "reconstruct_000.mid", "reconstruct_000.png",
    ]  # fmt: skip
    assert (copied / "prior_000.mid").read_bytes() == b"MThd in_attention 0"  # the first seed's run
    assert (report / "samples" / "none" / "prior_000.png").is_file()
    assert not (report / "samples" / "prefix").exists()
    md = (report / "summary.md").read_text()
    for link in ("(kl_curves.png)", "(zgap.png)", "(recon.png)", "(samples/in_attention/prior_000.mid)"):
        assert link in md
