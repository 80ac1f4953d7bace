"""Export a corpus if needed, tokenize it into cached bar-aligned segments, print a summary.

python scripts/prepare_data.py data=bach
python scripts/prepare_data.py data=midi_dir data.path=/some/folder data.bars=8
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from musicvae.choices import check_group_choices
from musicvae.data.prepare import prepare_data
from musicvae.errors import exit_on_user_error

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@hydra.main(config_path="../configs", config_name="prepare_data", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    prepare_data(cfg)


if __name__ == "__main__":
    exit_on_user_error(check_group_choices)(CONFIG_DIR, sys.argv[1:])
    main()
