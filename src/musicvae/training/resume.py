"""Resuming a run so that nothing is lost: the run's own folder, its newest checkpoint, its whole curve.

    ckpt_path=<run>/checkpoints/last.ckpt   resume into <run> (not a new folder), unless output_dir says otherwise
    ckpt_path=last                          the newest checkpoint of the run dir (output_dir, or a sweep's run dir)
    resume=true                             the same when a last.ckpt exists, else start fresh (what sweeps set)

A run that trained to its end writes `finished.json` (its config and result): with skip_finished=true
the same run started again (a sweep re-launched into its sweep dir) is not trained twice.

Lightning's CSVLogger deletes `metrics.csv` when it starts; `ResumingCSVLogger` keeps the rows the run
logged before the checkpoint's step and appends after them, and `trim_kl_per_dim` drops the records
after it, so a run killed after its checkpoint and resumed has every logged step exactly once.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment

from musicvae.errors import UserError

LAST = "last.ckpt"
FINISHED = "finished.json"  # written last by a run that trained to its end: {"config": ..., "result": ...}


def last_checkpoint(run_dir: Path) -> Path:
    """Where a run keeps its newest checkpoint (ModelCheckpoint's save_last, and the one saved on SIGTERM)."""
    return run_dir / "checkpoints" / LAST


class BestAndLastCheckpoint(ModelCheckpoint):
    """The best checkpoint by `monitor`, and last.ckpt after every validation. Lightning 2.6's `save_last=True`
    refreshes last.ckpt only at a step where a best checkpoint is saved: once val/elbo stops improving, last.ckpt
    stayed at an older step (seen in a study run: last.ckpt at step 4,200 of 4,800), and resuming or sampling
    from it read stale weights."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):  # nothing saved at this step yet
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def _config_key(cfg: DictConfig) -> dict:
    """The resolved config without `skip_finished` (re-running with it set must still match)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("skip_finished", None)
    return plain


def finished_result(run_dir: Path, cfg: DictConfig) -> dict | None:
    """The result a run dir's finished.json holds when it trained to its end with this very config."""
    try:
        done = json.loads((run_dir / FINISHED).read_text())
    except (OSError, ValueError):
        return None
    return done["result"] if done.get("config") == _config_key(cfg) else None


def mark_finished(run_dir: Path, cfg: DictConfig, result: dict) -> None:
    (run_dir / FINISHED).write_text(json.dumps({"config": _config_key(cfg), "result": result}, indent=1))


def run_dir_of_checkpoint(ckpt_path: str | Path) -> Path | None:
    """<run> for <run>/checkpoints/<name>.ckpt (the layout train() writes), else None."""
    path = Path(ckpt_path)
    return path.parent.parent if path.parent.name == "checkpoints" else None


def resume_checkpoint(ckpt_path: str | None, resume: bool, run_dir: Path) -> Path | None:
    """The checkpoint to resume from: ckpt_path as given, `last` = the run dir's last.ckpt, or with
    resume=true that file when it exists. None: a fresh run."""
    newest = last_checkpoint(run_dir)
    if ckpt_path == "last":
        if not newest.is_file():
            raise UserError(
                f"ckpt_path=last: {newest} does not exist: set output_dir to the run to resume "
                "(its folder holds checkpoints/last.ckpt), or pass the checkpoint's path"
            )
        return newest
    if ckpt_path:
        return Path(ckpt_path)
    return newest if resume and newest.is_file() else None


def rows_before(path: Path, step: int) -> tuple[list[dict], list[str]]:
    """(rows with step < `step`, the header) of a CSVLogger metrics.csv; ([], []) when there is none."""
    if not path.is_file():
        return [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r.get("step") not in (None, "") and int(float(r["step"])) < step]
        return rows, list(reader.fieldnames or [])


class ResumingCSVLogger(CSVLogger):
    """A CSVLogger into `save_dir` that, resuming at `resume_step`, keeps the earlier rows of its metrics.csv."""

    def __init__(self, *args, resume_step: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._experiment is not None:
            return self._experiment
        path = Path(self.log_dir) / "metrics.csv"
        kept, header = rows_before(path, self.resume_step) if self.resume_step else ([], [])
        writer = super().experiment  # Lightning's writer: it deletes metrics.csv
        if kept:
            with open(path, "w", newline="") as f:  # the csv module's defaults, as Lightning writes
                out = csv.DictWriter(f, fieldnames=header)
                out.writeheader()
                out.writerows(kept)
            writer.metrics_keys = sorted(header)  # new rows append under this header (or widen it)
        return writer

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        # Lightning flushes the CSV every 100 steps: flush at every checkpoint too, so that a run killed
        # later still has on disk every row up to the step it will resume from.
        super().after_save_checkpoint(checkpoint_callback)
        self.save()


def trim_kl_per_dim(path: Path, step: int) -> None:
    """Keep the kl_per_dim.jsonl records up to `step` (the checkpoint's): the rest is logged again."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))
