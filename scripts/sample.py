"""Write MIDI from a trained checkpoint.  python scripts/sample.py ckpt=PATH mode=prior|reconstruct|interpolate|edit|shift"""

import hydra
from omegaconf import DictConfig, OmegaConf

from musicvae.errors import exit_on_user_error
from musicvae.sampling import SampleRequest, sample


@hydra.main(config_path="../configs", config_name="sample", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    summary = sample(SampleRequest(**OmegaConf.to_container(cfg, resolve=True)))
    print(f"wrote {len(summary['results'])} file(s) to {summary['settings']['out_dir']}")


if __name__ == "__main__":
    main()
