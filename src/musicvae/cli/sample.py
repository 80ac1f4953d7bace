"""Write MIDI (and its audio) from a trained checkpoint.
musicvae-sample ckpt=PATH mode=prior|reconstruct|interpolate|edit|shift|transfer [overrides]
(or python scripts/sample.py ...; see configs/sample.yaml)"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from musicvae.cli import CONFIG_DIR
from musicvae.cli.common import check_command_line
from musicvae.errors import exit_on_user_error
from musicvae.generation.modes import SampleRequest, sample
from musicvae.tokens.attributes import ATTRIBUTES


def typed_classes() -> dict[str, str]:
    """rhythm=+2 as typed: Hydra reads +2 as the number 2, and the sign is what says "shift, do not set"."""
    typed = {}
    for override in HydraConfig.get().overrides.task:
        key, _, value = override.partition("=")
        if key in ATTRIBUTES:
            typed[key] = value
    return typed


@exit_on_user_error
def sample_from_config(cfg: DictConfig) -> None:
    request = {**OmegaConf.to_container(cfg, resolve=True), **typed_classes()}
    summary = sample(SampleRequest(**request))
    print(f"wrote {len(summary['results'])} file(s) to {summary['settings']['out_dir']}")


@hydra.main(config_path=str(CONFIG_DIR), config_name="sample", version_base="1.3")
def run(cfg: DictConfig) -> None:
    sample_from_config(cfg)


def main() -> None:
    check_command_line()
    run()


if __name__ == "__main__":
    main()
