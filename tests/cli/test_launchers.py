"""Sweeps through Hydra's launchers: hydra/launcher=slurm (submitit, each job may be a DDP run), local
(submitit's local executor) and parallel (joblib). The configs compose into the plugins' launchers with our
settings; a 2-run sweep through the local executor (and one through joblib) gets both runs and the report,
and scripts/compare.py reports on the sweep after it moved away from where its runs ran."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.utils import JobReturn
from hydra.utils import instantiate

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = "hydra_plugins.hydra_submitit_launcher.submitit_launcher"


def compose_with_hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides, return_hydra_config=True)


@pytest.mark.parametrize(
    "overrides, target, expected",
    [
        (["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "hydra.launcher.partition=gpu",
          "hydra.launcher.timeout_min=90"],
         f"{PLUGINS}.SlurmLauncher",
         {"tasks_per_node": 4, "gpus_per_node": 4, "nodes": 1, "partition": "gpu", "timeout_min": 90,
          "max_num_timeout": 3, "signal_delay_s": 120}),
        (["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2"],
         f"{PLUGINS}.SlurmLauncher",
         {"tasks_per_node": 8, "gpus_per_node": 8, "nodes": 2, "partition": None}),
        (["hydra/launcher=local", "trainer=ddp_cpu"],
         f"{PLUGINS}.LocalLauncher",
         {"tasks_per_node": 1, "gpus_per_node": 2, "timeout_min": 1440}),
        (["hydra/launcher=parallel", "hydra.launcher.n_jobs=3"],
         "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
         {"n_jobs": 3}),
    ],
)  # fmt: skip
def test_each_launcher_config_composes_into_its_plugin_with_our_settings(overrides, target, expected):
    cfg = compose_with_hydra(overrides)
    assert cfg.hydra.launcher._target_ == target
    launcher = instantiate(cfg.hydra.launcher)  # as Hydra does: interpolations resolved in the whole config
    params = launcher.params if hasattr(launcher, "params") else launcher.joblib
    assert {key: params[key] for key in expected} == expected


def test_a_slurm_job_asks_for_one_task_per_gpu_of_the_ddp_run(tmp_path, monkeypatch):
    """The sbatch script submitit writes for a job of `hydra/launcher=slurm trainer=ddp trainer.devices=4`
    (no cluster here: a stand-in `srun`, and the submission itself is intercepted)."""
    import submitit

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    executors = []

    def intercept(executor, fn, *args):
        executors.append(executor)
        return [type("Job", (), {"results": lambda self: [JobReturn()]})() for _ in args[0]]

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", intercept)
    cfg = compose_with_hydra(
        ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "hydra.launcher.partition=gpu",
         f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.job.name=train"]
    )  # fmt: skip
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    assert len(launcher.launch([["seed=0"], ["seed=1"]], initial_job_idx=0)) == 2
    sbatch = executors[0]._executor._make_submission_file_text("python -m submitit.core._submit", "uid")
    for line in ("--gpus-per-node=4", "--ntasks-per-node=4", "--nodes=1", "--partition=gpu", "--time=720",
                 "--signal=USR2@120", "--cpus-per-task=8", "--mem=64GB", "--job-name=train"):  # fmt: skip
        assert f"#SBATCH {line}\n" in sbatch, line
    assert "srun" in sbatch  # every task runs the job: Lightning's SLURM environment makes it one rank


def tiny(midi: Path, data: Path, trainer: str = "debug") -> list[str]:
    return [
        "data=midi_dir", f"data.path={midi}", f"paths.data_dir={data}", "data.workers=1", "data.batch_size=4",
        "data.max_tokens=128", "data.val_fraction=0.25", f"trainer={trainer}", "trainer.max_steps=4",
        "trainer.val_check_interval=2", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
        "model.d_model=32", "model.layers=1", "model.heads=2",
        "model.latent_dim=8", "model.ff_mult=2", "eval.fidelity.n_reconstructions=2",
        "eval.fidelity.n_samples=2", "eval.fidelity.n_files=1",
    ]  # fmt: skip


def run(*command: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def report_modes(sweep: Path) -> set[str]:
    with open(sweep / "report" / "summary.csv", newline="") as f:
        return {row["mode"] for row in csv.DictReader(f)}


RUNS = ["0_in_attention_seed0", "1_none_seed0"]


@pytest.mark.slow
def test_a_sweep_through_submitit_local_gets_both_runs_and_the_report_which_compare_rewrites_elsewhere(
    midi_folder, tmp_path
):
    sweep = tmp_path / "sweep"
    proc = run(
        "scripts/train.py", "-m", "experiment=collapse_compare", "model/conditioning=in_attention,none",
        "hydra/launcher=local", f"hydra.sweep.dir={sweep}", *tiny(midi_folder, tmp_path / "data"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Submitit 'local' sweep" in proc.stdout + proc.stderr  # the runs ran in submitit's processes
    visible = sorted(p.name for p in sweep.iterdir() if not p.name.startswith("."))  # .submitit/: its logs
    assert visible == [*RUNS, "multirun.yaml", "report"]
    assert all((sweep / r / "finished.json").is_file() for r in RUNS)
    assert report_modes(sweep) == {"in_attention", "none"}  # written when the sweep ended

    # The sweep as copied off a cluster: another folder, the data the runs read gone, no report yet.
    moved = tmp_path / "elsewhere" / "sweep"
    shutil.move(sweep, moved)
    shutil.rmtree(midi_folder)
    shutil.rmtree(tmp_path / "data")
    shutil.rmtree(moved / "report")
    proc = run("scripts/compare.py", str(moved))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report_modes(moved) == {"in_attention", "none"}
    assert any((moved / "report" / "samples" / "in_attention").glob("*.mid"))
    assert str(sweep) not in (moved / "report" / "summary.md").read_text()


@pytest.mark.slow
def test_a_sweep_through_joblib_runs_side_by_side_each_run_a_ddp_run_and_gets_the_report(midi_folder, tmp_path):
    """2 runs at once in joblib's worker processes, each on 2 DDP processes: ranks > 0 are started on the
    run dir, not from the worker's command line (a loky worker's, which Lightning would run again)."""
    sweep = tmp_path / "sweep"
    proc = run(
        "scripts/train.py", "-m", "experiment=collapse_compare", "model/conditioning=in_attention,none",
        "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}",
        *tiny(midi_folder, tmp_path / "data", trainer="ddp_cpu"),
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in out
    assert sorted(p.name for p in sweep.iterdir()) == [*RUNS, "multirun.yaml", "report"]
    for name in RUNS:
        assert (sweep / name / "finished.json").is_file()
        assert out.count(f"run dir: {sweep / name} ") == 2  # rank 0 in the worker, rank 1 started by it
        with open(sweep / name / "metrics.csv", newline="") as f:
            assert [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")] == [0, 1, 2, 3]
    assert report_modes(sweep) == {"in_attention", "none"}
