"""DDP on 2 CPU processes (gloo): a single run and a sweep through scripts/train.py, each run trained once
into one folder by both ranks; 2 processes x batch B/2 train as 1 process x batch B; each rank its own
noise. The multi-process tests are slow (`pytest -m slow tests/training/test_ddp.py`)."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from musicvae.data import MidiDataModule
from musicvae.training import ddp
from musicvae.training.seeding import PerRankSeed, rank_seed
from musicvae.training.train import train

ROOT = Path(__file__).resolve().parents[2]
VAL_KEYS = ("val/recon", "val/ppl", "val/kl", "val/rate", "val/distortion", "val/elbo", "val/au", "val/mi",
            "val/recon_acc")  # fmt: skip


def tiny(midi: Path, data: Path) -> list[str]:
    """Overrides that shrink the real config to seconds (4 steps, validation at 2 and 4)."""
    return [
        "data=midi_dir", f"data.path={midi}", f"paths.data_dir={data}", "data.workers=1",
        "data.batch_size=4", "data.max_tokens=128", "data.val_fraction=0.25", "trainer.max_steps=4",
        "trainer.val_check_interval=2", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
        "model.d_model=32", "model.layers=1", "model.heads=2", "model.latent_dim=8", "model.ff_mult=2",
        "eval.fidelity.n_reconstructions=2", "eval.fidelity.n_samples=2", "eval.fidelity.n_files=1",
    ]  # fmt: skip


def run_script(*args: str, timeout: int = 300) -> tuple[int, str]:
    """scripts/train.py ARGS in a child process → (exit code, stdout + stderr of every rank)."""
    proc = subprocess.run(
        [sys.executable, "scripts/train.py", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def logged_steps(run: Path, key: str) -> list[int]:
    with open(run / "metrics.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get(key)]


def val_rows(run: Path) -> dict[int, dict[str, float]]:
    with open(run / "metrics.csv", newline="") as f:
        return {
            int(r["step"]): {k: float(r[k]) for k in VAL_KEYS} for r in csv.DictReader(f) if r.get("val/elbo")
        }


def noise_seeds(output: str) -> dict[int, set[int]]:
    """rank -> the seeds PerRankSeed logged for it."""
    seeds: dict[int, set[int]] = {}
    for rank, seed in re.findall(r"rank (\d+): noise seeded with (\d+)", output):
        seeds.setdefault(int(rank), set()).add(int(seed))
    return seeds


# ---- fast: the pieces -------------------------------------------------------------------------------


def test_each_rank_draws_its_own_noise_and_a_resumed_run_new_noise():
    def draws(rank: int, step: int) -> torch.Tensor:
        PerRankSeed(seed=7).on_train_start(SimpleNamespace(global_rank=rank, global_step=step), None)
        return torch.randn(8)

    assert torch.equal(draws(0, 0), draws(0, 0))  # reproducible
    assert not torch.equal(draws(0, 0), draws(1, 0))  # per rank
    assert not torch.equal(draws(0, 0), draws(0, 100))  # a run resumed at step 100 does not replay step 0's
    assert len({rank_seed(s, r, t) for s in (0, 1) for r in (0, 1, 2) for t in (0, 1)}) == 12


def test_ranks_above_zero_are_started_on_the_run_dir_and_the_environment_is_restored(tmp_path, monkeypatch):
    """Ranks > 0 run `python -m musicvae.training.rank RUN_DIR` (not rank 0's command line, which under
    Hydra is the whole sweep); afterwards the environment holds no LOCAL_RANK (which would make the next
    run of a sweep wait for ranks that nobody starts)."""
    started = []
    monkeypatch.setattr(ddp.subprocess, "Popen", lambda command, env: started.append((command, env)))
    monkeypatch.setenv("MASTER_PORT", "12345")  # set from outside: kept
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    environment = SimpleNamespace(
        main_address="127.0.0.1", main_port=23456, node_rank=lambda: 0, local_rank=lambda: 0,
        creates_processes_externally=False, validate_settings=lambda **_: None,
    )  # fmt: skip
    strategy = SimpleNamespace(_launcher=_SubprocessScriptLauncher(environment, num_processes=3, num_nodes=1))
    strategy.launcher = strategy._launcher
    trainer = SimpleNamespace(strategy=strategy)
    with ddp.ddp_processes(trainer, tmp_path / "run"):
        assert isinstance(trainer.strategy._launcher, ddp.RunDirLauncher)
        trainer.strategy._launcher._call_children_scripts()
        assert os.environ["LOCAL_RANK"] == "0"
    assert [command for command, _ in started] == [
        [sys.executable, "-m", "musicvae.training.rank", str((tmp_path / "run").resolve())]
    ] * 2
    assert [env["LOCAL_RANK"] for _, env in started] == ["1", "2"]
    assert {env["WORLD_SIZE"] for _, env in started} == {"3"}
    assert "LOCAL_RANK" not in os.environ and os.environ["MASTER_PORT"] == "12345"


# ---- slow: 2 processes ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_two_process_run_trains_once_into_one_folder(midi_folder, tmp_path):
    runs = tmp_path / "runs"
    code, out = run_script(
        "trainer=ddp_cpu", f"hydra.run.dir={runs / 'the_run'}", *tiny(midi_folder, tmp_path / "data")
    )
    assert code == 0, out[-3000:]
    assert [p.name for p in runs.iterdir()] == ["the_run"]  # Hydra's run dir, for both ranks
    run = runs / "the_run"
    assert (run / "checkpoints" / "last.ckpt").is_file() and list((run / "checkpoints").glob("best-*.ckpt"))
    assert (run / "finished.json").is_file() and (run / "fidelity.json").is_file()
    assert not list(run.glob("*ddp_process*"))  # rank 1 did not go through Hydra (Lightning's way does)
    assert logged_steps(run, "train/loss") == [0, 1, 2, 3]  # every step once
    assert logged_steps(run, "val/elbo") == [1, 3]
    # Data prepared once, by global rank 0, while rank 1 waited (the cache did not exist before).
    assert out.count("tokenizing 12 files") == 1 and out.count("cache written to") == 1
    assert not re.search(r"\[rank 1\]\[musicvae\.data\.(cache|corpus|prepare)\]", out)  # its own batches it may log
    assert re.search(r"\[rank 1\]\[musicvae\.data\.datamodule\].*rank 1 of 2", out)  # ...and it did: its share
    seeds = noise_seeds(out)
    assert set(seeds) == {0, 1} and seeds[0].isdisjoint(seeds[1])  # each rank its own noise
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)[
        "state_dict"
    ]
    assert state and all(key.startswith("model.") for key in state)  # not DDP's `module.` wrapper


@pytest.mark.slow
def test_a_ddp_sweep_runs_each_job_once_and_writes_the_report_once(midi_folder, tmp_path):
    sweep = tmp_path / "sweep"
    code, out = run_script(
        "-m", "experiment=collapse_compare", "model/conditioning=in_attention,prefix", "trainer=ddp_cpu",
        f"hydra.sweep.dir={sweep}", *tiny(midi_folder, tmp_path / "data"),
    )  # fmt: skip
    assert code == 0, out[-3000:]
    assert sorted(p.name for p in sweep.iterdir()) == [
        "0_in_attention_seed0",
        "1_prefix_seed0",
        "multirun.yaml",
        "report",
    ]
    # Launched once and reported once: with Lightning's own launcher rank 1 ran the sweep a second time.
    assert out.count("Launching 2 jobs") == 1 and out.count("report: ") == 1
    for run in ("0_in_attention_seed0", "1_prefix_seed0"):
        assert out.count(f"run dir: {sweep / run} ") == 2  # rank 0 and rank 1, nobody else
        assert logged_steps(sweep / run, "train/loss") == [0, 1, 2, 3]
        assert (sweep / run / "finished.json").is_file()
    with open(sweep / "report" / "summary.csv", newline="") as f:
        assert {r["mode"] for r in csv.DictReader(f)} == {"in_attention", "prefix"}


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_the_same_global_batch(train_cfg):
    """2 processes x batch N/2 against 1 process x batch N, N = the whole train split: every step both see
    the same N segments. Made deterministic so that the comparison can be tight: the `none` decoder
    ignores z (its noise differs per rank by design), no dropout, no transposition, free bits 0 (the loss
    is then a mean over segments, which DDP's averaged gradients reproduce exactly).

    Tolerance: only float32 rounding differs (two partial means all-reduced against one mean, padding to
    other lengths, masked). Measured after 6 Adam steps: validation metrics within 1e-7 relative (MI, a
    difference of large terms, 1e-5 relative, 5e-8 absolute), weights within 1e-6. We allow 1e-4 relative
    (1e-5 absolute) and 1e-4 on the weights: a rank that saw other data, or gradients not averaged, moves
    the metrics by percent.
    """
    settings = (
        "model/conditioning=none", "model.dropout=0.0", "data.transpose=0", "kl=constant", "kl.beta=0.5",
        "kl.free_bits=0", "kl.zero_steps=0", "optim.lr=3e-3", "trainer.max_steps=6",
        "trainer.val_check_interval=3", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
        "eval.fidelity.n_reconstructions=0", "eval.fidelity.n_samples=0",
    )  # fmt: skip
    # An even number n of train segments (no rank pads its share with a duplicate): the first windowing
    # of the corpus that gives one.
    for windows in (("data.hop_bars=2",), ("data.hop_bars=1",), ("data.hop_bars=4",), ("data.bars=2",)):
        probe = train_cfg(*settings, *windows)
        dm = MidiDataModule(probe.data, probe.tokenizer)
        dm.prepare_data()
        dm.setup()
        n = len(dm.datasets["train"])
        if n % 2 == 0 and 8 <= n <= 64:
            break
    else:
        pytest.fail("no windowing of the test corpus gives an even number of train segments")
    settings = (*settings, *windows)
    one = train(
        train_cfg(*settings, "trainer=cpu", f"data.batch_size={n}", f"output_dir={probe.output_dir}/one")
    )
    two = train(
        train_cfg(
            *settings, "trainer=ddp_cpu", f"data.batch_size={n // 2}", f"output_dir={probe.output_dir}/two"
        )
    )
    assert one["global_step"] == two["global_step"] == 6
    a, b = val_rows(one["run_dir"]), val_rows(two["run_dir"])
    assert list(a) == list(b) == [2, 5]
    for step in a:
        for key in VAL_KEYS:
            assert b[step][key] == pytest.approx(a[step][key], rel=1e-4, abs=1e-5), (step, key)
    wa = torch.load(one["last_ckpt"], map_location="cpu", weights_only=True)["state_dict"]
    wb = torch.load(two["last_ckpt"], map_location="cpu", weights_only=True)["state_dict"]
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4
    assert a[5]["val/elbo"] < a[2]["val/elbo"] * 0.99  # ... while training moved them by far more
