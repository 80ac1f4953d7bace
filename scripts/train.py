"""Train a music VAE.  python scripts/train.py [Hydra overrides]   (see configs/train.yaml)

python scripts/train.py model/conditioning=cross_attention kl=cyclical kl.free_bits=0.25
python scripts/train.py -m experiment=collapse_compare        # every conditioning, one after the other
python scripts/train.py trainer=ddp_cpu                       # DDP on 2 CPU processes (trainer=ddp: every GPU)
python scripts/train.py -m experiment=collapse_compare hydra/launcher=parallel   # or local, slurm: README
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from musicvae.choices import check_group_choices
from musicvae.errors import exit_on_user_error
from musicvae.training.train import train

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    exit_on_user_error(check_group_choices)(CONFIG_DIR, sys.argv[1:])
    main()
