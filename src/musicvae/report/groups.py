"""Grouping the runs of a sweep: runs equal on every setting that varies, except the seed, form a group.

The settings are the leaves of each run's resolved config, flattened to dotted keys. A key *varies*
when its value differs between runs (a key missing from some runs counts as differing), so a sweep
over modes, β values, free bits or model sizes is grouped correctly without being told what it swept.
Bookkeeping keys that differ per run without changing the experiment (IGNORED_*) never split groups.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from musicvae.report.runs import MODE_ORDER, Run, select

MODE_KEY = "model.conditioning.mode"
CONDITIONING = "model.conditioning."  # keys implied by (or only meaningful for) a mode
BETA_KEY = "kl.beta"
IGNORED_KEYS = frozenset({"seed", "output_dir", "ckpt_path", "group", "tags", "data.path", "data.cache_dir"})
IGNORED_PREFIXES = ("paths.", "logger.", "hydra.")
_ABSENT = object()  # a key missing from a run's config: differs from every value, null included


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """Nested config -> {dotted key: leaf value}; lists become tuples (hashable, comparable)."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = _hashable(value)
    return flat


def _hashable(value: object) -> object:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    return value


def _ignored(key: str) -> bool:
    return key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES) or key == MODE_KEY


def varying_keys(flats: list[dict[str, object]]) -> list[str]:
    """The keys whose value differs between runs (missing counts as differing): in config order, with
    model.conditioning.* last."""
    keys = list(dict.fromkeys(k for flat in flats for k in flat if not _ignored(k)))
    varying = [k for k in keys if len({flat.get(k, _ABSENT) for flat in flats}) > 1]
    return sorted(varying, key=lambda k: k.startswith(CONDITIONING))  # the experiment's settings first


def format_value(value: object) -> str:
    """A setting's value for labels and tables: 0.05, true, null, a,b."""
    if value is None or value is _ABSENT:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value)
    return str(value)


def _sort_value(value: object) -> tuple:
    """Sort settings numerically where they are numbers (β 0.02 < 0.1), else as text."""
    if value is None or value is _ABSENT:
        return (0, 0.0, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0.0, format_value(value))


def order_modes(modes) -> list[str]:
    """The modes in report order: MODE_ORDER first, then any others alphabetically."""
    modes = set(modes)
    return [m for m in MODE_ORDER if m in modes] + sorted(modes - set(MODE_ORDER))


def _seed_key(run: Run) -> tuple:
    """Sort runs by seed (runs without one last), then by folder name."""
    return (run.seed is None, run.seed if run.seed is not None else 0, run.name)


@dataclass
class Group:
    """Runs that differ only in their seed."""

    mode: str
    settings: dict[str, object]  # every varying key but the mode -> this group's value (None: absent)
    label_keys: tuple[str, ...]  # the settings shown in the label
    runs: list[Run]  # sorted by seed
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.name()

    def name(self, without: tuple[str, ...] = ()) -> str:
        """The mode, then key=value of the label keys not in `without`."""
        shown = [f"{k}={format_value(self.settings[k])}" for k in self.label_keys if k not in without]
        return " ".join([self.mode, *shown])

    def label_in(self, context: str) -> str:
        """The label without the key=value parts of `context` (a context label heads the calls made in it)."""
        shared = set(context.split())
        return " ".join(part for part in self.label.split() if part not in shared)

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]

    @property
    def config(self) -> dict:
        """The config of the group's first run (its runs agree on everything that is not bookkeeping)."""
        return self.runs[0].config

    @property
    def context(self) -> dict[str, object]:
        """The settings outside model.conditioning.*: what the group shares with its other-mode peers."""
        return {k: v for k, v in self.settings.items() if not k.startswith(CONDITIONING)}

    @property
    def context_label(self) -> str:
        return " ".join(f"{k}={format_value(v)}" for k, v in self.context.items())

    @property
    def beta(self) -> float:
        return _float(select(self.config, BETA_KEY))

    @property
    def free_bits(self) -> float:
        value = _float(select(self.config, "kl.free_bits"))
        return 0.0 if math.isnan(value) else value

    @property
    def schedule(self) -> str | None:
        value = select(self.config, "kl.schedule")
        return None if value is None else str(value)

    @property
    def latent_dim(self) -> float:
        return _float(select(self.config, "model.latent_dim"))


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def group_runs(runs: list[Run]) -> list[Group]:
    """One Group per combination of mode and varying settings; groups in mode order, then by settings."""
    flats = [flatten(r.config) for r in runs]
    keys = varying_keys(flats)
    buckets: dict[tuple, list[int]] = {}
    for i, (run, flat) in enumerate(zip(runs, flats, strict=True)):
        buckets.setdefault((run.mode, *(flat.get(k, _ABSENT) for k in keys)), []).append(i)
    # A model.conditioning.* key belongs in the label only where it varies within a mode: cross_attention's
    # n_memory, absent from every other mode, is implied by the mode and would only clutter the label.
    within: dict[str, set[str]] = {mode: set() for mode, *_ in buckets}
    for j, key in enumerate(keys):
        for mode in within:
            if len({b[1 + j] for b in buckets if b[0] == mode}) > 1:
                within[mode].add(key)
    groups = []
    for bucket, members in buckets.items():
        mode, first = bucket[0], flats[members[0]]
        settings = {k: (None if first.get(k, _ABSENT) is _ABSENT else first[k]) for k in keys}
        label_keys = tuple(k for k in keys if not k.startswith(CONDITIONING) or k in within[mode])
        grouped = sorted((runs[i] for i in members), key=_seed_key)
        groups.append(Group(mode, settings, label_keys, grouped))
    rank = {m: i for i, m in enumerate(order_modes(g.mode for g in groups))}
    groups.sort(key=lambda g: (rank[g.mode], [_sort_value(g.settings[k]) for k in keys]))
    _unique_labels(groups)
    return groups


def _unique_labels(groups: list[Group]) -> None:
    """Labels name groups in files and figures: make sure no two are equal (null vs absent can tie)."""
    seen: dict[str, int] = {}
    for g in groups:
        seen[g.label] = seen.get(g.label, 0) + 1
        if seen[g.label] > 1:
            g.label = f"{g.label} #{seen[g.label]}"


def counterparts(group: Group, groups: list[Group], mode: str) -> list[Group]:
    """The groups of `mode` with the same settings outside model.conditioning.* (the same experiment
    with the other conditioning); several when a conditioning key varies within that mode."""
    return [g for g in groups if g is not group and g.mode == mode and g.context == group.context]


def path_safe(label: str) -> str:
    """A group label as a folder name."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", label).strip("_") or "group"
