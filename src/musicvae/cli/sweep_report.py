"""Hydra glue for experiments: write the comparison report when a multirun sweep ends, and with
`logger=wandb` log it to the sweep's wandb group, so the dashboard shows the numbers of summary.md."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from musicvae.generation.audio import AUDIO_SUFFIXES
from musicvae.report import read_csv, read_verdict, write_report

log = logging.getLogger(__name__)

FIGURES = ("rate_distortion.png", "beta.png", "kl_curves.png", "zgap.png", "recon.png")


def _value(cell: str) -> object:
    """A CSV cell for a wandb.Table: numbers as numbers (so the dashboard can plot them), empty as None."""
    if cell == "":
        return None
    try:
        return float(cell)
    except ValueError:
        return cell


def _table(wandb, columns: Sequence[str], rows: Sequence[Mapping[str, str]]):
    """CSV rows as a wandb.Table, numbers as numbers."""
    return wandb.Table(columns=list(columns), data=[[_value(row.get(c, "")) for c in columns] for row in rows])


def log_report_to_wandb(
    report_dir: Path,
    rows: Sequence[Mapping[str, str]],
    verdict: str,
    wandb_cfg: Mapping,
    group: str | None,
    columns: Sequence[str] | None = None,
):
    """One extra wandb run (job_type "report", saved under report_dir) in the sweep's group: the summary
    rows as a wandb.Table (summary.csv's columns), the calls as another (verdicts.csv: one row per call and
    budget, the table summary.md opens with), the verdict text, the figures, index.html as wandb.Html and
    every sample's audio and piano roll (samples/<group>/<sample>). Returns the summary Table.

    wandb_cfg is the sweep's `logger.wandb` (project, mode: offline by default, so no network is needed).
    """
    import wandb  # only with logger=wandb: keep the report usable without initialising wandb

    columns = list(columns or (rows[0] if rows else []))
    table = _table(wandb, columns, rows)
    calls = report_dir / "verdicts.csv"
    verdicts = _table(wandb, *read_csv(calls)) if calls.is_file() else None
    run = wandb.init(
        project=wandb_cfg.get("project") or "musicvae",
        mode=wandb_cfg.get("mode") or "offline",
        group=group,
        job_type="report",
        name="report",
        notes=verdict,
        dir=str(report_dir),
        reinit=True,
    )
    try:
        run.log({"report/summary": table} | ({"report/verdicts": verdicts} if verdicts is not None else {}))
        run.summary["report/verdict"] = verdict
        images = {
            f"report/{p.stem}": wandb.Image(str(p)) for p in map(report_dir.joinpath, FIGURES) if p.is_file()
        }
        if images:
            run.log(images)
        if (page := report_dir / "index.html").is_file():  # its media are links: sample_media carries them
            run.log({"report/page": wandb.Html(page.read_text(), inject=False)})
        if samples := sample_media(report_dir):
            run.log(samples)
    finally:
        wandb.finish()
    return table


def sample_media(report_dir: Path) -> dict:
    """{"samples/<group>/<sample>": wandb.Audio, ".../<sample>_roll": wandb.Image} for every sample with audio
    under report_dir/samples/ (wandb keeps audio as files only outside tables)."""
    import wandb

    media = {}
    for audio in sorted((report_dir / "samples").glob("*/*")):
        if audio.suffix in AUDIO_SUFFIXES:
            key = f"samples/{audio.parent.name}/{audio.stem}"
            media[key] = wandb.Audio(str(audio), caption=f"{audio.parent.name}: {audio.stem}")
            if (roll := audio.with_suffix(".png")).is_file():
                media[f"{key}_roll"] = wandb.Image(str(roll))
    return media


class ReportCallback(Callback):
    """After the last run of a sweep: compare.py's report in SWEEP_DIR/report/ (and to wandb with it)."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        report = write_report(sweep_dir)
        log.info("report: %s", report / "summary.md")
        wandb_cfg = config.get("logger", {}).get("wandb")
        if not wandb_cfg:
            return
        try:
            group = config.get("group") or str(sweep_dir)
        except Exception:  # ${hydra:...} outside a resolvable context: the runs used the sweep dir
            group = str(sweep_dir)
        columns, rows = read_csv(report / "summary.csv")
        log_report_to_wandb(report, rows, read_verdict(report), wandb_cfg, group, columns)
        log.info("report logged to wandb group %s", group)
