"""Attribute vectors of a checkpoint.  python scripts/attributes.py ckpt=PATH  -> PATH's <name>.attributes.pt"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from musicvae.choices import check_group_choices
from musicvae.control import compute_attribute_vectors, data_override, vectors_path
from musicvae.errors import exit_on_user_error
from musicvae.inference import load_checkpoint

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@hydra.main(config_path="../configs", config_name="attributes", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    loaded = load_checkpoint(cfg.ckpt, cfg.device)
    override = data_override(cfg.get("data"), cfg.data_path)
    vectors = compute_attribute_vectors(loaded, cfg.split, cfg.max_segments, override, cfg.batch_size)
    path = vectors_path(loaded.path)
    vectors.save(path)
    norms = ", ".join(f"{n} {float(v.norm()):.3f}" for n, v in zip(vectors.names, vectors.vectors, strict=True))
    print(f"wrote {path} ({vectors.n} {vectors.latent} latents of the {cfg.split} split; vector norms: {norms})")


if __name__ == "__main__":
    exit_on_user_error(check_group_choices)(CONFIG_DIR, sys.argv[1:])  # data=nosuch: one line, not Hydra's report
    main()
