"""Synthetic sweeps for the report tests: run folders as training writes them (a realistic resolved
config.yaml, a sparse CSVLogger metrics.csv, optionally fidelity.json and samples/).

The `sweep` fixture is a `Sweep`: sweep.path, sweep.run(mode, seed, val, **settings), and the validation
value makers sweep.healthy(...) / sweep.control(...).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

VAL_STEPS = (10, 20, 30, 40)  # the last quarter of a run (steps >= 30) holds the last two validations
CONDITIONING = {
    "in_attention": {"position": "post_norm", "per_layer": False, "bias": False},
    "cross_attention": {"n_memory": 4},
}


def run_config(
    sweep: Path,
    name: str,
    mode: str,
    seed: int,
    beta: float = 0.2,
    free_bits: float = 0.0,
    schedule: str = "cyclical",
    latent_dim: int = 32,
    **conditioning,
) -> dict:
    """The resolved config train.py saves: bookkeeping (output_dir, logger, tags, paths) differs per run."""
    return {
        "paths": {"data_dir": f"/data/{seed}"},
        "data": {
            "name": "bach_2bar",
            "path": f"/data/{seed}/midi/bach",
            "cache_dir": f"/data/{seed}/cache",
            "bars": 2,
            "batch_size": 32,
            "val_segments": 512,
        },
        "model": {
            "d_model": 128,
            "layers": 2,
            "encoder_layers": 2,
            "decoder_layers": 2,
            "heads": 4,
            "latent_dim": latent_dim,
            "dropout": 0.1,
            "conditioning": {"mode": mode, **CONDITIONING.get(mode, {}), **conditioning},
        },
        "kl": {
            "schedule": schedule,
            "beta": beta,
            "warmup_steps": 0,
            "cycles": 2,
            "ratio": 0.5,
            "zero_steps": 100,
            "total_steps": 300,
            "free_bits": free_bits,
        },
        "trainer": {"accelerator": "cpu", "max_steps": 300, "val_check_interval": 50},
        "logger": {
            "csv": True,
            "wandb": {
                "project": "musicvae",
                "mode": "offline",
                "group": str(sweep),
                "job_type": mode,
                "tags": ["collapse_compare", mode],
            },
        },
        "seed": seed,
        "ckpt_path": None,
        "output_dir": str(sweep / name),
        "group": str(sweep),
        "tags": ["collapse_compare", mode],
        "optim": {"lr": 1e-3, "betas": [0.9, 0.98], "warmup_steps": 30},
    }


def write_metrics(path: Path, rows: list[dict]) -> None:
    """A CSVLogger-style metrics.csv: epoch, step, then the metric columns; missing cells left empty."""
    keys = sorted({k for row in rows for k in row} - {"epoch", "step"})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "step", *keys], restval="")
        writer.writeheader()
        writer.writerows({"epoch": 0, **row} for row in sorted(rows, key=lambda r: r["step"]))


def write_run(
    sweep: Path,
    mode: str,
    seed: int,
    val: dict[str, list[float] | float],
    fidelity: dict | None = None,
    samples: bool = False,
    **settings,
) -> Path:
    """A run folder. `val`: per metric, its values at the last len(list) of VAL_STEPS (a list) or its final
    value (a number, then logged at the last validation only); settings go to run_config (beta=,
    free_bits=, position=...)."""
    sweep.mkdir(parents=True, exist_ok=True)
    beta = settings.get("beta", 0.2)
    name = f"{len(list(sweep.iterdir()))}_{mode}_beta{beta}_seed{seed}"
    run = sweep / name
    run.mkdir()
    OmegaConf.save(OmegaConf.create(run_config(sweep, name, mode, seed, **settings)), run / "config.yaml")
    rows = [
        {
            "step": s,
            "train/kl": 1.0 + 0.1 * (s % 10),
            "train/beta": min(beta, beta * s / 20),
            "train/loss": 3.0,
        }
        for s in range(0, VAL_STEPS[-1] + 5, 5)
    ]
    at_step: dict[int, dict] = {step: {} for step in VAL_STEPS}
    for key, values in val.items():
        values = values if isinstance(values, list) else [values]  # a number is a final value only
        for step, value in zip(VAL_STEPS[-len(values) :], values, strict=True):
            at_step[step][key] = value
    rows += [{"step": step, **cells} for step, cells in at_step.items()]
    write_metrics(run / "metrics.csv", rows)
    if fidelity is not None:
        (run / "fidelity.json").write_text(json.dumps(fidelity))
    if samples:
        (run / "samples").mkdir()
        for kind in ("prior", "reconstruct"):
            (run / "samples" / f"{kind}_000.mid").write_bytes(f"MThd {mode} {seed}".encode())
            (run / "samples" / f"{kind}_000.png").write_bytes(b"\x89PNG fake")
        (run / "samples" / "notes.txt").write_text("not a sample")
    return run


def healthy(zgap: float = 0.02, kl: float = 8.0, distortion: float = 60.0) -> dict[str, list[float]]:
    """Validation values of a run whose decoder uses z (final values last); converged: distortion flat over
    the last quarter."""
    return {
        "val/kl": [kl / 2, kl, kl, kl],
        "val/rate": [kl / 2, kl, kl, kl],
        "val/distortion": [distortion + 10, distortion + 2, distortion, distortion],
        "val/elbo": [distortion + 10 + kl / 2, distortion + 2 + kl, distortion + kl, distortion + kl],
        "val/au": [10, 20, 20, 20],
        "val/mi": [1.0, 2.0, 2.0, 2.0],
        "val/zgap": [zgap / 2, zgap, zgap, zgap],
        "val/recon": [2.0, 1.5, 1.4, 1.4],
        "val/ppl": [7.4, 4.5, 4.1, 4.1],
        "val/recon_acc": [0.4, 0.6, 0.65, 0.65],
    }


def control(distortion: float = 70.0) -> dict[str, list[float]]:
    """The `none` control: KL falls to ~0, z-gap exactly 0 (the decoder never sees z); converged."""
    return {
        "val/kl": [1.0, 0.01, 0.001, 0.001],
        "val/rate": [1.0, 0.01, 0.001, 0.001],
        "val/distortion": [distortion + 5, distortion + 1, distortion, distortion],
        "val/elbo": [distortion + 6, distortion + 1.01, distortion + 0.001, distortion + 0.001],
        "val/au": [2, 0, 0, 0],
        "val/mi": [0.1, 0.0, 0.0, 0.0],
        "val/zgap": [0.0, 0.0, 0.0, 0.0],
        "val/recon": [2.2, 2.0, 1.9, 1.9],
        "val/ppl": [9.0, 7.4, 6.7, 6.7],
        "val/recon_acc": [0.3, 0.4, 0.42, 0.42],
    }


class Sweep:
    """A sweep dir under construction (fixtures can't be imported as functions from a conftest)."""

    healthy = staticmethod(healthy)
    control = staticmethod(control)

    def __init__(self, path: Path):
        self.path = path

    def run(self, mode: str, seed: int, val: dict, **kwargs) -> Path:
        return write_run(self.path, mode, seed, val, **kwargs)


@pytest.fixture
def sweep(tmp_path) -> Sweep:
    return Sweep(tmp_path / "sweep")
