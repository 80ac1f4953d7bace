"""Evaluate a checkpoint (python scripts/evaluate.py ..., or musicvae-evaluate; see configs/evaluate.yaml).

    fidelity=true [floor_ckpt=NONE_RUN.ckpt] [pieces.temperature=0.5]
        whole test pieces reconstructed as sample.py does -> fidelity/pieces.json, pieces.md: per-bar chroma,
        groove, metre, bar counts, beside the shuffled-z floor (and a decoder without z, given its checkpoint)
    control=true [control.protocol=shift]
        -> control/evaluation.json, evaluation.md (ρ beside its copy and shuffled-request baselines)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from musicvae.cli import CONFIG_DIR
from musicvae.cli.common import check_command_line
from musicvae.errors import UserError, exit_on_user_error
from musicvae.evaluation.control import ControlSettings, control_table, evaluate_control, flatten_scores
from musicvae.evaluation.pieces import PieceFidelityConfig, evaluate_pieces, held_out_pieces, pieces_table
from musicvae.generation.attribute_vectors import (
    AttributeVectors,
    compute_attribute_vectors,
    data_override,
    training_data,
    vectors_path,
)
from musicvae.generation.inference import load_checkpoint


@exit_on_user_error
def evaluate(cfg: DictConfig) -> None:
    if not cfg.control.enabled and not cfg.fidelity:
        raise UserError("nothing to evaluate: fidelity=true (whole test pieces reconstructed) and/or control=true")
    loaded = load_checkpoint(cfg.ckpt, cfg.device)
    override = data_override(cfg.get("data"), cfg.data_path)
    if cfg.fidelity:
        piece_fidelity(cfg, loaded, override)
    if cfg.control.enabled:
        control(cfg, loaded, override)


def piece_fidelity(cfg: DictConfig, loaded, override: dict | None) -> None:
    """Whole test pieces of the checkpoint's data reconstructed -> <out>/pieces.json, pieces.md; with floor_ckpt
    (a decoder without z) the same pieces at the same settings -> pieces_floor.json, in pieces.md below. Given a
    run folder as out_dir, pieces.json is what the training would have written there: the report reads it."""
    settings = PieceFidelityConfig(**OmegaConf.to_container(cfg.pieces, resolve=True))
    paths = held_out_pieces(training_data(loaded, override), settings.n_pieces, cfg.split)
    out = Path(cfg.out_dir) if cfg.out_dir else loaded.path.parent / "fidelity"
    out.mkdir(parents=True, exist_ok=True)
    result = {"checkpoint": str(loaded.path), **evaluate_pieces(loaded, paths, settings)}
    (out / "pieces.json").write_text(json.dumps(result, indent=2))
    text = f"# Whole-piece fidelity of {loaded.path}\n\n" + pieces_table(result)
    if cfg.floor_ckpt:
        floor = load_checkpoint(cfg.floor_ckpt, cfg.device)
        floor_result = {"checkpoint": str(floor.path), **evaluate_pieces(floor, paths, settings)}
        (out / "pieces_floor.json").write_text(json.dumps(floor_result, indent=2))
        text += f"\n\n## The floor: {floor.path} ({floor.model.cfg.conditioning['mode']})\n\n" + pieces_table(floor_result)
    (out / "pieces.md").write_text(text + "\n")
    print(text)
    print(f"wrote {out / 'pieces.json'} and pieces.md")


def control(cfg: DictConfig, loaded, override: dict | None) -> None:
    """Attribute control of the checkpoint -> <out>/evaluation.json, evaluation.md."""
    vectors, path = None, vectors_path(loaded.path)
    if path.is_file() and (cfg.vectors is True or str(cfg.vectors) == "auto"):
        vectors = AttributeVectors.load(path)
    elif cfg.vectors is True:  # none yet: compute them, and keep them beside the checkpoint
        vectors = compute_attribute_vectors(loaded, data_override=override)
        vectors.save(path)
    if vectors is None and not loaded.model.cfg.attributes:
        raise UserError(
            f"{cfg.ckpt} has no attributes and no attribute vectors: run scripts/attributes.py ckpt={cfg.ckpt} "
            "first (or vectors=true)"
        )
    settings = ControlSettings.from_cfg(cfg)
    result = evaluate_control(loaded, training_data(loaded, override), settings, vectors)
    out = Path(cfg.out_dir) if cfg.out_dir else loaded.path.parent / "control"
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps({**flatten_scores(result), "details": result}, indent=2))
    (out / "evaluation.md").write_text(f"# Control of {loaded.path}\n\n" + control_table(result))
    print(control_table(result))
    print(f"wrote {out / 'evaluation.json'} and evaluation.md")


def control_switch(arg: str) -> str:
    """`control=true|false`, the switch of the commands this script has always taken, sets control.enabled now
    that `control` is a node of settings (control.protocol=...)."""
    key, _, value = arg.partition("=")
    return f"control.enabled={value}" if key == "control" and value.lower() in ("true", "false") else arg


@hydra.main(config_path=str(CONFIG_DIR), config_name="evaluate", version_base="1.3")
def run(cfg: DictConfig) -> None:
    evaluate(cfg)


def main() -> None:
    sys.argv[1:] = [control_switch(a) for a in sys.argv[1:]]
    check_command_line()  # data=nosuch: one line, not Hydra's report
    run()


if __name__ == "__main__":
    main()
