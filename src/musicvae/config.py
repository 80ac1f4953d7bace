"""Config helpers below every package: a config node as a plain dict, and the command line's
`group=option` overrides checked before Hydra sees them.

Hydra answers an unknown option (`data=nosuch`) with a multi-line report; the CLIs call
`check_group_choices` first so the user gets one line naming the valid options instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from musicvae.errors import UserError

HIDDEN_OPTIONS = {"base"}  # shared settings pulled in by the others, not an option of their own
# Keys that were once in a config and moved: the override that replaces each.
MOVED_KEYS = {
    "trainer.on_nan": "callbacks.non_finite.on_nan",
    "trainer.checkpoint_every_n_steps": "callbacks=[default,periodic_checkpoint] callbacks.periodic_checkpoint.every_n_train_steps",
    "trainer.prepare_data_per_node": "data.prepare_data_per_node",
}


def group_options(config_dir: Path, group: str) -> list[str]:
    """The selectable options of a config group: its .yaml files, minus the hidden ones."""
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml") if p.stem not in HIDDEN_OPTIONS)


def check_group_choices(config_dir: str | Path, overrides: Sequence[str]) -> None:
    """UserError for an override like `data=nosuch` that names no file of an existing config group."""
    config_dir = Path(config_dir)
    for override in overrides:
        key, sep, value = override.partition("=")
        key = key.lstrip("+~")
        if key in MOVED_KEYS:
            raise UserError(f"{key} has moved: {MOVED_KEYS[key]}={value}" if sep else f"{key} has moved: {MOVED_KEYS[key]}")
        if sep and "." in key and (config_dir / key.replace(".", "/")).is_dir():
            group = key.replace(".", "/")
            raise UserError(
                f"{override}: switch the config group with a slash, {group}={value} "
                f"(a dot would replace the whole {key} node with the string {value!r})"
            )
        if not sep or key.startswith("hydra") or "." in key or not (config_dir / key).is_dir():
            continue
        choices = group_options(config_dir, key)
        # a multirun sweep: data=bach,folk; several options of one group: callbacks=[default,lr_monitor]
        for option in value.strip("[]").split(","):
            if option and option != "null" and option not in choices:
                raise UserError(f"unknown {key}={option}: choose one of {', '.join(choices)}")


def to_plain_dict(cfg: Any) -> dict:
    """A DictConfig (interpolations resolved) or a mapping → a plain dict (a copy)."""
    if cfg is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    return dict(cfg)
