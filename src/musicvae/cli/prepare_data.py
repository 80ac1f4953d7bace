"""Export a corpus if needed, tokenize it into cached bar-aligned segments, print a summary.

musicvae-prepare-data data=bach                  (or python scripts/prepare_data.py ...)
musicvae-prepare-data data=midi_dir data.path=/some/folder data.bars=8
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from musicvae.cli import CONFIG_DIR
from musicvae.cli.common import check_command_line
from musicvae.data.prepare import prepare_data
from musicvae.errors import exit_on_user_error


@hydra.main(config_path=str(CONFIG_DIR), config_name="prepare_data", version_base="1.3")
def run(cfg: DictConfig) -> None:
    exit_on_user_error(prepare_data)(cfg)


def main() -> None:
    check_command_line()
    run()


if __name__ == "__main__":
    main()
