"""Write MIDI from a trained checkpoint.
python scripts/sample.py ckpt=PATH mode=prior|reconstruct|interpolate|edit|shift|transfer [overrides]"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from musicvae.data.attributes import ATTRIBUTES
from musicvae.errors import exit_on_user_error
from musicvae.sampling import SampleRequest, sample


def typed_classes() -> dict[str, str]:
    """rhythm=+2 as typed: Hydra reads +2 as the number 2, and the sign is what says "shift, do not set"."""
    typed = {}
    for override in HydraConfig.get().overrides.task:
        key, _, value = override.partition("=")
        if key in ATTRIBUTES:
            typed[key] = value
    return typed


@hydra.main(config_path="../configs", config_name="sample", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    request = {**OmegaConf.to_container(cfg, resolve=True), **typed_classes()}
    summary = sample(SampleRequest(**request))
    print(f"wrote {len(summary['results'])} file(s) to {summary['settings']['out_dir']}")


if __name__ == "__main__":
    main()
