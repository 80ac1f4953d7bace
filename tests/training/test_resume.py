"""Resume that keeps everything: a run killed with SIGKILL after a checkpoint, or stopped by SIGTERM,
resumed into its own folder, has every logged step in metrics.csv exactly once and ends with the values,
weights, optimizer and scheduler state of an uninterrupted run (same data position, same noise); SIGTERM
saves a checkpoint and exits 143; a diverging run stops with one clear error."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from musicvae.errors import UserError
from musicvae.training.resume import resume_checkpoint, run_dir_of_checkpoint
from musicvae.training.train import train

ROOT = Path(__file__).resolve().parents[2]
KILL_AT = 13  # after the step-10 checkpoint, before the step-20 one

# Run train(cfg) as scripts/train.py does (exit codes included) in a child process that sends itself
# `signal` at step KILL_AT: SIGKILL (no handler, no clean-up) or SIGTERM (a scheduler's preemption).
KILLER = """
import os, signal, sys
from hydra import compose, initialize_config_dir
from musicvae.errors import exit_on_user_error
from musicvae.training.module import VAEModule
from musicvae.training.train import train

def die(self, outputs, batch, batch_idx):
    if self.global_step == {kill_at}:
        os.kill(os.getpid(), signal.{signal})

VAEModule.on_train_batch_end = die
with initialize_config_dir(config_dir={configs!r}, version_base="1.3"):
    exit_on_user_error(train)(compose("train", overrides={overrides!r}))
"""


def run_and_signal(run: Path, overrides: list[str], signal: str) -> subprocess.CompletedProcess:
    script = KILLER.format(kill_at=KILL_AT, signal=signal, configs=str(ROOT / "configs"), overrides=overrides)
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


@pytest.fixture
def overrides(midi_folder, tmp_path):
    def _overrides(out: Path, *extra: str) -> list[str]:
        return [
            "data=midi_dir", f"data.path={midi_folder}", f"paths.data_dir={tmp_path / 'data'}", "data.workers=1",
            "data.batch_size=4", "data.max_tokens=128", "data.val_fraction=0.25", "trainer=debug",
            "trainer.max_steps=30", "trainer.val_check_interval=10", "model.d_model=32", "model.layers=1",
            "model.heads=2", "model.latent_dim=8", "model.ff_mult=2", "eval.fidelity.n_reconstructions=0",
            "eval.fidelity.n_samples=0", f"output_dir={out}", *extra,
        ]  # fmt: skip

    return _overrides


def logged(run: Path) -> list[tuple[int, tuple[str, ...]]]:
    """(step, the metrics filled in) of every metrics.csv row."""
    with open(run / "metrics.csv", newline="") as f:
        return [(int(r["step"]), tuple(sorted(k for k, v in r.items() if v and k != "step"))) for r in csv.DictReader(f)]


def assert_trained_alike(resumed: Path, whole: Path) -> None:
    """The resumed run ends where the uninterrupted one does: every logged value (to 1e-5 relative), the
    weights, the optimizer's moments and step, the scheduler, the step and epoch (to 1e-6). A resume that
    restarted from fresh weights, replayed or skipped batches, or drew other noise would differ."""
    with open(resumed / "metrics.csv", newline="") as f, open(whole / "metrics.csv", newline="") as g:
        mine, theirs = list(csv.DictReader(f)), list(csv.DictReader(g))
    assert [r.keys() for r in mine] == [r.keys() for r in theirs] and len(mine) == len(theirs)
    for a, b in zip(mine, theirs, strict=True):
        for key in a:
            assert (a[key] == "") == (b[key] == ""), (a["step"], key)
            if a[key]:
                assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-5, abs=1e-7), (a["step"], key)
    a, b = (torch.load(r / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True) for r in (resumed, whole))
    assert (a["global_step"], a["epoch"]) == (b["global_step"], b["epoch"])
    for name, tensor in b["state_dict"].items():
        torch.testing.assert_close(a["state_dict"][name], tensor, rtol=1e-6, atol=1e-6, msg=name)
    for mine_opt, their_opt in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for index, state in their_opt["state"].items():
            for key, value in state.items():
                torch.testing.assert_close(mine_opt["state"][index][key], value, rtol=1e-6, atol=1e-6)
    assert a["lr_schedulers"] == b["lr_schedulers"]


def test_killed_and_resumed_run_keeps_every_logged_step_once(overrides, compose_cfg, tmp_path):
    whole = train(compose_cfg("train", overrides(tmp_path / "whole")))["run_dir"]

    run = tmp_path / "killed"
    proc = run_and_signal(run, overrides(run), "SIGKILL")
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "finished.json").exists()
    before = logged(run)
    assert before and max(s for s, _ in before) >= 9  # the rows up to the checkpoint reached the disk

    result = train(compose_cfg("train", overrides(run, "ckpt_path=last")))
    assert result["global_step"] == 30 and result["run_dir"] == run
    rows = logged(run)
    assert rows == logged(whole)  # every step, every metric, once each and in order
    assert_trained_alike(run, whole)  # and with the same values: same data position, noise and state
    steps = [json.loads(line)["step"] for line in (run / "kl_per_dim.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30]


EVERY_4 = ("callbacks=[default,periodic_checkpoint]", "callbacks.periodic_checkpoint.every_n_train_steps=4")


def test_checkpoints_every_n_steps_bound_what_a_kill_costs(overrides, compose_cfg, tmp_path):
    run = tmp_path / "killed"
    proc = run_and_signal(run, overrides(run, *EVERY_4), "SIGKILL")
    assert proc.returncode == -9, proc.stderr[-2000:]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 12  # the newest multiple of 4 before the kill at 13, not validation's 10
    whole = train(compose_cfg("train", overrides(tmp_path / "whole", *EVERY_4)))
    assert train(compose_cfg("train", overrides(run, *EVERY_4, "resume=true")))["global_step"] == 30
    assert logged(run) == logged(whole["run_dir"])
    assert_trained_alike(run, whole["run_dir"])


def test_a_checkpoint_path_resumes_into_its_own_run(tmp_path):
    assert run_dir_of_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt") == tmp_path / "run"
    assert run_dir_of_checkpoint(tmp_path / "elsewhere.ckpt") is None
    with pytest.raises(UserError, match="ckpt_path=last.*output_dir"):
        resume_checkpoint("last", False, tmp_path / "run")
    assert resume_checkpoint(None, True, tmp_path / "run") is None  # resume=true, nothing yet: fresh
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert resume_checkpoint(None, True, tmp_path / "run") == tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert resume_checkpoint(None, False, tmp_path / "run") is None


# SIGUSR1: SLURM's warning; outside SLURM, a stop (slow: the same path as SIGTERM, another signal number)
@pytest.mark.parametrize("signal", ["SIGTERM", pytest.param("SIGUSR1", marks=pytest.mark.slow)])
def test_sigterm_saves_a_checkpoint_exits_143_and_resumes_without_loss(overrides, compose_cfg, tmp_path, signal):
    whole = train(compose_cfg("train", overrides(tmp_path / "whole")))["run_dir"]
    run = tmp_path / "preempted"
    proc = run_and_signal(run, overrides(run), signal)
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert "interrupted: SIGTERM at step" in proc.stderr and "Traceback" not in proc.stderr
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] > 10  # saved at the signal, not the step-10 validation's checkpoint
    assert not (run / "finished.json").exists()  # a sweep started again will resume it, not skip it
    result = train(compose_cfg("train", overrides(run, "resume=true")))
    assert result["global_step"] == 30
    assert logged(run) == logged(whole)
    assert_trained_alike(run, whole)


@pytest.mark.parametrize("on_nan", ["stop", "skip"])
def test_a_diverging_run_stops_with_one_clear_error_or_skips(overrides, compose_cfg, tmp_path, on_nan):
    from musicvae.training.faults import NonFiniteLoss
    from musicvae.training.module import VAEModule

    real = VAEModule.loss_terms

    def poisoned(self, *args, **kwargs):  # a loss that turns NaN at step 15, like a diverging run
        terms = real(self, *args, **kwargs)
        step = args[2] if len(args) > 2 else kwargs["step"]
        if step >= 15:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    run = tmp_path / on_nan
    cfg = compose_cfg("train", overrides(run, f"callbacks.non_finite.on_nan={on_nan}"))
    VAEModule.loss_terms = poisoned
    try:
        if on_nan == "stop":
            with pytest.raises(NonFiniteLoss, match=r"at step 15: training stopped. Last good checkpoint: .*last.ckpt"):
                train(cfg)
        else:
            result = train(cfg)
    finally:
        VAEModule.loss_terms = real
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())  # never a NaN checkpoint
    if on_nan == "skip":
        assert result["global_step"] == 30
        with open(run / "metrics.csv", newline="") as f:
            skipped = [float(r["train/skipped"]) for r in csv.DictReader(f) if r.get("train/skipped")]
        assert skipped[-1] == 15  # steps 15..29 dropped and counted
