"""With logger=wandb the sweep's report goes to the sweep's wandb group: offline here, no network."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from omegaconf import OmegaConf

from musicvae.cli.sweep_report import ReportCallback, log_report_to_wandb
from musicvae.report import read_csv, read_verdict, write_report


def write_sweep(sweep: Path) -> Path:
    """Two modes × two seeds, each run a config.yaml and a metrics.csv with three validations."""
    for i, (mode, seed) in enumerate([(m, s) for m in ("in_attention", "none") for s in (0, 1)]):
        run = sweep / f"{i}_{mode}_seed{seed}"
        run.mkdir(parents=True)
        config = {"seed": seed, "output_dir": str(run), "model": {"conditioning": {"mode": mode}},
                  "kl": {"schedule": "constant", "beta": 0.2, "free_bits": 0.0}}  # fmt: skip
        OmegaConf.save(OmegaConf.create(config), run / "config.yaml")
        zgap = 0.0 if mode == "none" else 0.01 + 0.001 * seed
        with open(run / "metrics.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["epoch", "step", "val/kl", "val/zgap", "val/distortion"])
            writer.writerows([0, step, 1.0 + seed, zgap, 50.0 - step] for step in (10, 20, 30))
    return sweep


def wait_for(find, done=lambda found: True, timeout_s: float = 30.0):
    """find() once it returns something that `done` accepts, polling up to timeout_s; else the last find()."""
    deadline = time.monotonic() + timeout_s
    while (found := find()) is None or not done(found):
        if time.monotonic() > deadline:
            return found
        time.sleep(0.2)
    return found


def test_log_report_to_wandb_writes_an_offline_run_with_one_table_row_per_group(tmp_path, offline_wandb):
    sweep = write_sweep(tmp_path / "sweep")
    report = write_report(sweep)
    columns, rows = read_csv(report / "summary.csv")

    table = log_report_to_wandb(report, rows, read_verdict(report), {"project": "musicvae", "mode": "offline"},
                                group=str(sweep), columns=columns)  # fmt: skip

    assert list(table.columns) == columns and len(table.data) == len(rows) == 2  # one row per group
    kl = columns.index("val/kl_final_mean")
    assert [r[columns.index("group")] for r in table.data] == ["in_attention", "none"]
    assert [r[kl] for r in table.data] == [float(r["val/kl_final_mean"]) for r in rows]  # numbers, not text
    # wandb's service process writes the run's files; on a loaded machine (pytest-xdist) they can land a moment
    # after wandb.finish() returns: wait for them (what is checked is unchanged)
    log = wait_for(lambda: next(report.glob("wandb/offline-run-*/run-*.wandb"), None),
                   lambda path: str(sweep).encode() in path.read_bytes())  # the sweep's group is recorded
    assert str(sweep).encode() in log.read_bytes()
    saved = wait_for(lambda: next(report.glob("wandb/offline-run-*/files/media/table/report/summary_*.table.json"), None))
    assert len(list(report.glob("wandb/offline-run-*/files/media/table/report/summary_*.table.json"))) == 1
    saved = json.loads(saved.read_text())  # the table as written, read back
    assert saved["columns"] == columns and len(saved["data"]) == 2
    calls = wait_for(lambda: next(report.glob("wandb/offline-run-*/files/media/table/report/verdicts_*.table.json"), None))
    calls = json.loads(calls.read_text())  # the calls as summary.md's table and verdicts.csv hold them
    verdict_columns, verdict_rows = read_csv(report / "verdicts.csv")
    assert calls["columns"] == verdict_columns and len(calls["data"]) == len(verdict_rows) > 0
    assert "stable" in calls["columns"] and "budget" in calls["columns"]


def test_the_callback_logs_to_wandb_only_with_logger_wandb(tmp_path, offline_wandb):
    sweep = write_sweep(tmp_path / "sweep")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}, "group": str(sweep),
                               "logger": {"csv": True, "wandb": None}})  # fmt: skip
    ReportCallback().on_multirun_end(config)
    assert (sweep / "report" / "summary.md").is_file() and not (sweep / "report" / "wandb").exists()

    config.logger.wandb = {"project": "musicvae", "mode": "offline", "group": str(sweep)}
    ReportCallback().on_multirun_end(config)
    runs = list((sweep / "report").glob("wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0


def test_the_report_run_holds_the_page_and_plays_the_samples(tmp_path, offline_wandb):
    import pretty_midi

    sweep = write_sweep(tmp_path / "sweep")
    samples = sweep / "0_in_attention_seed0" / "samples"
    samples.mkdir()
    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(0))
    pm.instruments[0].notes.append(pretty_midi.Note(90, 60, 0.0, 1.0))
    pm.write(str(samples / "prior_000.mid"))  # a run from before audio: the report renders it
    report = write_report(sweep)
    assert (report / "samples" / "in_attention" / "prior_000.ogg").is_file()
    log_report_to_wandb(report, read_csv(report / "summary.csv")[1], read_verdict(report), {"mode": "offline"},
                        group=str(sweep))  # fmt: skip
    (files,) = report.glob("wandb/offline-run-*/files")
    (page,) = files.glob("media/html/report/page_*.html")
    assert "Posterior collapse" in page.read_text() and "<audio" in page.read_text()
    (audio,) = files.glob("media/audio/samples/in_attention/prior_000_*.ogg")  # wandb sync uploads it
    assert audio.read_bytes()[:4] == b"OggS"
