"""The DDP processes of one run, wherever the run was started from (a single run, a Hydra sweep, a
submitit or joblib worker).

Lightning's DDP starts ranks > 0 by running rank 0's command line again (`_SubprocessScriptLauncher`,
with `hydra.run.dir=...` appended under Hydra). In a `-m` sweep that command is the sweep's: measured with
pytorch-lightning 2.6 and a 2-mode sweep on 2 CPU processes, rank 1 ran the whole sweep a second time
(each of its jobs joining whichever job rank 0 was at) and wrote the report a second time; only
`skip_finished` kept the processes it started for later jobs from training again. Inside a launcher's
worker the command line is not even ours (`python -m submitit.core._submit ...`, a loky worker).

`RunDirLauncher` starts rank r > 0 as `python -m musicvae.training.rank RUN_DIR` instead: it loads the
run's resolved config from RUN_DIR/config.yaml, which rank 0 writes before training starts, and trains
that one run into that same folder: no Hydra, no sweep, one run dir for all ranks.

Clusters that start every rank themselves (SLURM tasks through hydra/launcher=slurm, torchrun) are left
to Lightning: each task runs the same Hydra job and its cluster environment says which rank it is.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from pytorch_lightning.utilities import rank_zero_only

log = logging.getLogger(__name__)

CHILD_MODULE = "musicvae.training.rank"  # `python -m` it: one rank > 0 of a run (musicvae/training/rank.py)
# What Lightning sets in rank 0's environment for its ranks. Left there, the next run of a sweep in the
# same process would take LOCAL_RANK as "ranks are started from outside" and wait for ranks nobody starts.
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def launch_rank() -> int:
    """This process's rank as whatever started it says (LOCAL_RANK for the ranks Lightning starts,
    SLURM_PROCID for SLURM tasks; 0 for a plain process): known before any Trainer exists."""
    return int(rank_zero_only.rank)


class RunDirLauncher(_SubprocessScriptLauncher):
    """Lightning's launcher with another command for ranks > 0: `python -m musicvae.training.ddp RUN_DIR`
    (see the module docstring); the environment variables and checks are Lightning's."""

    def __init__(self, cluster_environment, num_processes: int, num_nodes: int, run_dir: Path):
        super().__init__(cluster_environment, num_processes, num_nodes)
        self.run_dir = Path(run_dir).resolve()

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        self.procs = []
        os.environ["MASTER_ADDR"] = self.cluster_environment.main_address
        os.environ["MASTER_PORT"] = str(self.cluster_environment.main_port)
        os.environ["NODE_RANK"] = str(self.cluster_environment.node_rank())
        os.environ["LOCAL_RANK"] = str(self.cluster_environment.local_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        command = [sys.executable, "-m", CHILD_MODULE, str(self.run_dir)]
        for local_rank in range(1, self.num_processes):
            # Same working directory as rank 0: relative paths in the config mean the same files.
            env = dict(os.environ, LOCAL_RANK=str(local_rank))
            self.procs.append(subprocess.Popen(command, env=env))


@contextmanager
def ddp_processes(trainer: pl.Trainer, run_dir: Path) -> Iterator[None]:
    """Around trainer.fit: ranks > 0 (if the strategy starts any) train `run_dir`'s run; afterwards the
    process group is destroyed and the environment as it was, so the next run of a sweep in this process
    starts its own ranks (Lightning reuses an initialized process group, whose other ranks have exited)."""
    saved = {key: os.environ.get(key) for key in DDP_ENV}
    launcher = trainer.strategy.launcher
    if type(launcher) is _SubprocessScriptLauncher:  # exactly Lightning's: a subclass chose its own command
        trainer.strategy._launcher = RunDirLauncher(
            launcher.cluster_environment, launcher.num_processes, launcher.num_nodes, run_dir
        )
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
