"""The data settings (`cfg.data`) as a typed, validated dataclass.

`DataConfig.from_cfg` accepts a Hydra/OmegaConf node or a plain dict; missing keys take the defaults
below (their only home: configs/data/base.yaml pulls them in as schema/data), unknown keys are ignored. `cache_key()` is the part that
changes the tokens and so keys the cache; batch-time settings (batch_size, transpose, loader_workers)
and how the tokenizing runs (workers, file_timeout_s) are left out of it on purpose.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musicvae.config import register_schema, to_plain_dict
from musicvae.errors import UserError
from musicvae.tokens.attributes import AttributeDefinitions

OVERLONG_MODES = ("truncate", "drop")
# Where the data comes from and how it is split (not how it is cut): a checkpoint keeps them apart from
# its data settings, so that scripts given only a checkpoint find its splits again, from a moved folder too.
DATA_SOURCE_KEYS = ("corpus", "path", "cache_dir", "val_fraction", "test_fraction", "limit_files")


def data_source(data_cfg: Any) -> dict:
    """`DATA_SOURCE_KEYS` of a data config, folders made absolute (scripts may run from elsewhere)."""
    source = {k: data_cfg.get(k) for k in DATA_SOURCE_KEYS}
    for key in ("path", "cache_dir"):
        if source[key]:
            source[key] = str(Path(source[key]).resolve())
    return source


@dataclass(frozen=True)
class DataConfig:
    """The `data` node (configs/data/*.yaml start from these defaults: the only place they are written).
    Keys marked (cache) change the tokens, so changing them builds a new cache; the others are read at batch
    time only."""

    name: str = "midi_dir"  # (cache) short name: the cache folder is <cache_dir>/<name>-<hash>
    corpus: str | None = None  # bundled music21 corpus exported into `path` first (bach | folk | mixed); None: a folder of yours
    path: str | None = None  # (cache) folder of MIDI files, read recursively (.mid / .midi)
    # as configs/paths/default.yaml: <MUSICVAE_DATA_DIR or data>/cache, so a dict config without paths agrees
    cache_dir: str = field(default_factory=lambda: str(Path(os.environ.get("MUSICVAE_DATA_DIR") or "data") / "cache"))
    bars: int = 4  # (cache) bars per segment: windows start on a bar line and hold `bars` bars
    hop_bars: int = 2  # (cache) bars between the starts of consecutive windows
    max_tokens: int = 512  # (cache) cap on a segment's tokens, without BOS/EOS
    overlong: str = "truncate"  # (cache) a window over max_tokens: truncate (at an event boundary) | drop
    merge_tracks: bool = True  # (cache) true: all non-drum tracks become one piano part; false: keep programs
    keep_drums: bool = False  # (cache) false: drum tracks are dropped (drums-only files are skipped)
    # (cache) share of pieces in val, by a stable hash of the piece's notes (copies of a tune share a split; a
    # small folder still gets 2 val pieces and 1 test piece); test_fraction: the same for test
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    limit_files: int | None = None  # (cache) use only the first N files (sorted by path): quick runs
    workers: int | None = None  # tokenizing processes; None: all cores
    # a file still tokenizing after this many seconds is skipped (reason `timeout`, as is `worker_crash` for one
    # that kills its process); None: no limit. Skipped files stay skipped in that cache: delete it to retry them
    file_timeout_s: float | None = 120.0
    transpose: int = 5  # train only: random shift in [-transpose, +transpose] semitones, pitches kept in range
    batch_size: int = 32
    # true: train batches of similar-length segments (shuffled; under DDP each process its own share): less
    # padding, so faster steps, but batches less varied, so a worse reconstruction at equal steps
    group_by_length: bool = False
    # DataLoader processes per training process (not `workers`, which tokenize): "auto" = min(4, cores per
    # process) when training on a GPU, 0 on CPU where they only cost; or an integer >= 0. Memory is pinned
    # when training on CUDA; workers persist when there are any
    loader_workers: int | str = "auto"
    val_segments: int = 512  # validation: a fixed sample of this many val segments, drawn across pieces
    val_sample_seed: int = 0  # ... with this seed: the same sample for every mode and run seed
    # data.attributes: how bar attributes are read (model.attributes, control, attribute vectors, prepare_data);
    # the node's keys are AttributeDefinitions' (rhythm, polyphony) and allow_empty_classes
    attributes: AttributeDefinitions = AttributeDefinitions()
    # data.attributes.allow_empty_classes: training with model.attributes stops when a class holds no training
    # bar; true: train anyway (the model never sees that class: requesting it measures nothing)
    allow_empty_attribute_classes: bool = False
    # multi-node DDP: false: global rank 0 builds the cache while the other ranks wait (a filesystem all nodes
    # share); true: local rank 0 of every node builds it (node-local disks)
    prepare_data_per_node: bool = False

    @staticmethod
    def shape_config(values: dict) -> dict:
        """The defaults as the `data` node has them: `attributes` holds the definitions and allow_empty_classes."""
        values["attributes"]["allow_empty_classes"] = values.pop("allow_empty_attribute_classes")
        return values

    @classmethod
    def from_cfg(cls, cfg: Any) -> DataConfig:
        """Build from `cfg.data` (DictConfig or dict); raises UserError on invalid values."""
        if isinstance(cfg, DataConfig):
            return cfg
        values = to_plain_dict(cfg)
        if "split" in values:  # optional nested form: data.split.{val,test}
            split = values.pop("split") or {}
            values.setdefault("val_fraction", split.get("val", cls.val_fraction))
            values.setdefault("test_fraction", split.get("test", cls.test_fraction))
        attributes = dict(values.pop("attributes", None) or {})
        values["allow_empty_attribute_classes"] = bool(attributes.pop("allow_empty_classes", cls.allow_empty_attribute_classes))
        unknown = set(attributes) - {"rhythm", "polyphony"}
        if unknown:
            raise UserError(f"data.attributes has no key {sorted(unknown)[0]!r}: it takes rhythm, polyphony, allow_empty_classes")
        values["attributes"] = AttributeDefinitions.from_dict(attributes)
        known = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in values.items() if k in known})
        config.validate()
        return config

    def validate(self) -> None:
        """Raise UserError naming the first bad key."""
        if self.bars < 1 or self.hop_bars < 1:
            raise UserError(f"data.bars and data.hop_bars must be >= 1 (got {self.bars}, {self.hop_bars})")
        if self.max_tokens < 8:
            raise UserError(f"data.max_tokens must be >= 8 (got {self.max_tokens})")
        if self.overlong not in OVERLONG_MODES:
            raise UserError(
                f"data.overlong must be one of {', '.join(OVERLONG_MODES)} (got {self.overlong!r})"
            )
        if not (
            0 <= self.val_fraction and 0 <= self.test_fraction and self.val_fraction + self.test_fraction < 1
        ):
            raise UserError(
                "data.val_fraction and data.test_fraction must be >= 0 and sum to less than 1 "
                f"(got {self.val_fraction}, {self.test_fraction})"
            )
        if self.transpose < 0:
            raise UserError(f"data.transpose must be >= 0 (got {self.transpose})")
        if self.val_segments < 2:
            raise UserError(f"data.val_segments must be >= 2 (got {self.val_segments})")
        if self.file_timeout_s is not None and not self.file_timeout_s > 0:
            raise UserError(f"data.file_timeout_s must be > 0 or null (got {self.file_timeout_s})")
        workers = self.loader_workers
        if not (workers == "auto" or (type(workers) is int and workers >= 0)):  # not True/False either
            raise UserError(f"data.loader_workers must be auto or an integer >= 0 (got {workers!r})")
        if self.limit_files is not None and self.limit_files < 1:
            raise UserError(f"data.limit_files must be >= 1 or null (got {self.limit_files})")

    @property
    def source_dir(self) -> Path:
        """The MIDI folder; UserError when `data.path` is not set."""
        if not self.path:
            raise UserError(
                f"data.path is not set for data={self.name}: give a folder of MIDI files, "
                "e.g. data=midi_dir data.path=/some/folder"
            )
        return Path(self.path).expanduser()

    @property
    def num_workers(self) -> int:
        """Tokenizing processes: `workers`, or every core this process may use."""
        if self.workers:
            return max(1, int(self.workers))
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    def cache_key(self) -> dict:
        """The settings that change the tokens (hashed into the cache folder name)."""
        return {
            "name": self.name,
            "path": str(self.source_dir.resolve()),
            "bars": self.bars,
            "hop_bars": self.hop_bars,
            "max_tokens": self.max_tokens,
            "overlong": self.overlong,
            "merge_tracks": self.merge_tracks,
            "keep_drums": self.keep_drums,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "limit_files": self.limit_files,
        }


register_schema("data", DataConfig)
