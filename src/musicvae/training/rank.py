"""One rank > 0 of a DDP run: `python -m musicvae.training.rank RUN_DIR`, as `RunDirLauncher`
(musicvae.training.ddp) starts it. It trains the run whose resolved config rank 0 wrote to RUN_DIR/config.yaml,
into that same folder: no Hydra, no sweep."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from omegaconf import OmegaConf

from musicvae.errors import UserError, exit_on_user_error
from musicvae.training.ddp import CHILD_MODULE
from musicvae.training.train import train


def run_rank(run_dir: Path) -> dict:
    """Train rank LOCAL_RANK of the run in `run_dir` (its config.yaml, as rank 0 wrote it)."""
    config = Path(run_dir) / "config.yaml"
    if not config.is_file():
        raise UserError(f"{config} does not exist: rank 0 writes it before it starts the other ranks")
    cfg = OmegaConf.load(config)
    cfg.output_dir = str(run_dir)  # the folder rank 0 chose (Hydra's run dir is not known here)
    return train(cfg)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise UserError(f"usage: python -m {CHILD_MODULE} RUN_DIR (started by rank 0 of a DDP run)")
    rank = os.environ.get("LOCAL_RANK", "?")
    logging.basicConfig(
        level=logging.INFO, format=f"[%(asctime)s][rank {rank}][%(name)s][%(levelname)s] - %(message)s"
    )
    run_rank(Path(args[0]))


if __name__ == "__main__":
    main()
