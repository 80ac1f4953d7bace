"""Hydra glue for experiments: write the comparison report when a multirun sweep ends."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from musicvae.report import write_report

log = logging.getLogger(__name__)


class ReportCallback(Callback):
    """After the last run of a sweep: compare.py's report in SWEEP_DIR/report/."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        report = write_report(sweep_dir)
        log.info("report: %s", report / "summary.md")
