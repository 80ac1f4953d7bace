"""Attribute vectors of a checkpoint.  musicvae-attributes ckpt=PATH  -> PATH's <name>.attributes.pt
(or python scripts/attributes.py ...; see configs/attributes.yaml)"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from musicvae.cli import CONFIG_DIR
from musicvae.cli.common import check_command_line
from musicvae.errors import exit_on_user_error
from musicvae.generation.attribute_vectors import (
    VectorSettings,
    compute_attribute_vectors,
    data_override,
    vectors_path,
)
from musicvae.generation.inference import load_checkpoint


@exit_on_user_error
def attribute_vectors(cfg: DictConfig) -> None:
    loaded = load_checkpoint(cfg.ckpt, cfg.device)
    override = data_override(cfg.get("data"), cfg.data_path)
    settings = VectorSettings(cfg.split, cfg.max_segments, cfg.batch_size)
    vectors = compute_attribute_vectors(loaded, settings, override)
    path = vectors_path(loaded.path)
    vectors.save(path)
    norms = ", ".join(f"{n} {float(v.norm()):.3f}" for n, v in zip(vectors.names, vectors.vectors, strict=True))
    print(f"wrote {path} ({vectors.n} {vectors.latent} latents of the {cfg.split} split; vector norms: {norms})")


@hydra.main(config_path=str(CONFIG_DIR), config_name="attributes", version_base="1.3")
def run(cfg: DictConfig) -> None:
    attribute_vectors(cfg)


def main() -> None:
    check_command_line()  # data=nosuch: one line, not Hydra's report
    run()


if __name__ == "__main__":
    main()
