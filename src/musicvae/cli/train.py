"""Train a music VAE.  musicvae-train [Hydra overrides]  (or python scripts/train.py; see configs/train.yaml)

musicvae-train model/conditioning=cross_attention kl=cyclical kl.free_bits=0.25
musicvae-train -m experiment=collapse_compare        # every conditioning, one after the other
musicvae-train trainer=ddp_cpu                       # DDP on 2 CPU processes (trainer=ddp: every GPU)
musicvae-train -m experiment=collapse_compare hydra/launcher=parallel   # or local, slurm: docs/cluster.md
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from musicvae.cli import CONFIG_DIR
from musicvae.cli.common import check_command_line
from musicvae.errors import exit_on_user_error
from musicvae.training.train import train


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def run(cfg: DictConfig) -> None:
    exit_on_user_error(train)(cfg)


def main() -> None:
    check_command_line()
    run()


if __name__ == "__main__":
    main()
