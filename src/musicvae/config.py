"""Config helpers below every package: a config node as a plain dict, the command line's `group=option`
overrides checked before Hydra sees them, and the registry that makes each dataclass the one home of its
node's defaults (`register_schema`, at the end).

Hydra answers an unknown option (`data=nosuch`) with a multi-line report; the CLIs call
`check_group_choices` first so the user gets one line naming the valid options instead.
"""

from __future__ import annotations

import dataclasses
import inspect
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


# --- One home per default (issue 20, item 1) ---------------------------------------------------------------
# The dataclass (or class) that reads a config node holds its defaults, beside the comment that says what each
# key does. It registers them as a node of the ConfigStore group `schema`; the YAML file of that node pulls it
# in first (`defaults: [/schema/kl@_here_, _self_]`) and sets only what differs from it or wires an
# interpolation. `--cfg job` prints the composed whole. tests/house/test_config_defaults.py checks the rule.
SCHEMA_GROUP = "schema"
SCHEMAS: dict[str, type] = {}  # "kl" or "conditioning/in_attention" -> the class holding the defaults


def schema_defaults(source: type) -> dict:
    """The defaults `source` holds, shaped as its config node: a dataclass's fields that have a default, or
    the keyword parameters of a class's `__init__` that have one (less its CONFIG_EXCLUDE), passed through
    its `shape_config(values)` where the node is shaped otherwise; nested dataclasses as dicts, tuples as lists."""
    if dataclasses.is_dataclass(source):
        items = {}
        for f in dataclasses.fields(source):
            if f.default is not dataclasses.MISSING:
                items[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                items[f.name] = f.default_factory()
    else:
        params = inspect.signature(source.__init__).parameters
        items = {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}
    exclude = getattr(source, "CONFIG_EXCLUDE", ())  # fields another config group or the run fills
    items = {k: _plain(v) for k, v in items.items() if k not in exclude}
    return source.shape_config(items) if hasattr(source, "shape_config") else items


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def register_schema(name: str, source: type) -> None:
    """Make `source`'s defaults the ConfigStore node `schema/<name>` (a YAML file's defaults list takes it)."""
    from hydra.core.config_store import ConfigStore

    group, _, leaf = f"{SCHEMA_GROUP}/{name}".rpartition("/")
    ConfigStore.instance().store(group=group, name=leaf, node=schema_defaults(source))
    SCHEMAS[name] = source
