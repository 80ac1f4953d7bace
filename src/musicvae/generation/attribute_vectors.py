"""Attribute vectors for any trained checkpoint, no retraining (MusicVAE's recipe), and z shifted along them;
and the checkpoint's own data, which they and the control evaluation (`musicvae.evaluation.control`) read.

    vectors = compute_attribute_vectors(loaded)          # encodes the training split of the checkpoint's data
    vectors.save(vectors_path(loaded.path))               # <ckpt>.attributes.pt, beside the checkpoint
    z_shifted = z + amount * vectors.vector("note_density")

For each attribute of `musicvae.tokens.attributes.ATTRIBUTES`, the vector is the mean posterior mean of
the latents whose attribute value ranks in the top quarter of the training split, minus that of the
bottom quarter (Roberts et al. 2018, MusicVAE's attribute vectors; quarters by rank, so ties at a
common value, e.g. many bars of pitch range 0, still give two quarters of equal size). A latent per
bar pairs with its bar's attributes; a latent per segment with the mean over the segment's bars.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from musicvae.config import register_schema
from musicvae.data.config import DATA_SOURCE_KEYS
from musicvae.data.datamodule import MidiDataModule
from musicvae.errors import UserError
from musicvae.generation.inference import LoadedCheckpoint, encode_segments, token_rules
from musicvae.tokens.attribute_classes import AttributeBins, latent_values
from musicvae.tokens.attributes import ATTRIBUTES, AttributeReader

log = logging.getLogger(__name__)

VECTORS_SUFFIX = ".attributes.pt"
VECTORS_FORMAT = 1


def vectors_path(ckpt: str | Path) -> Path:
    """Where the attribute vectors of a checkpoint live: beside it, `<name>.attributes.pt`."""
    ckpt = Path(ckpt)
    return ckpt.with_name(ckpt.stem + VECTORS_SUFFIX)


@dataclass
class AttributeVectors:
    names: tuple[str, ...]  # the attributes, in the order of the rows
    vectors: torch.Tensor  # (A, c): top-quarter mean z minus bottom-quarter mean z
    bins: AttributeBins  # class edges of the attribute values over the same latents
    latent: str  # segment | bar: what one row of the statistics was
    n: int  # latents (segments or bars) the vectors were computed from
    checkpoint: str = ""

    def vector(self, name: str) -> torch.Tensor:
        """The (c,) vector of one attribute; UserError naming the known ones otherwise."""
        if name not in self.names:
            raise UserError(f"attribute={name!r} is not one of {', '.join(self.names)}")
        return self.vectors[self.names.index(name)]

    def save(self, path: Path) -> None:
        torch.save(
            {"format": VECTORS_FORMAT, "names": list(self.names), "vectors": self.vectors.cpu(),
             "bins": self.bins.to_dict(), "latent": self.latent, "n": self.n, "checkpoint": self.checkpoint},
            path,
        )  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> AttributeVectors:
        path = Path(path)
        if not path.is_file():
            raise UserError(
                f"{path} does not exist: compute the attribute vectors first, "
                f"python scripts/attributes.py ckpt={path.with_name(path.name.replace(VECTORS_SUFFIX, '.ckpt'))}"
            )
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
            if d.get("format") != VECTORS_FORMAT:
                raise ValueError(f"format {d.get('format')}")
            return cls(tuple(d["names"]), d["vectors"], AttributeBins.from_dict(d["bins"]), d["latent"], int(d["n"]),
                       d.get("checkpoint", ""))  # fmt: skip
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
            raise UserError(f"{path} is not an attribute-vectors file of this version ({e}): run scripts/attributes.py again") from None


def data_override(data_cfg=None, data_path: str | None = None) -> dict | None:
    """What a script's `data=NAME` / `data_path=` replace in the checkpoint's data: its name, where the MIDI
    comes from and how it is split, never how it is cut into segments (the model's max length depends on that).

    A data config replaces the whole source, unset keys included: `data=midi_dir data_path=/my/folder` on a
    checkpoint trained on a bundled corpus reads that folder as it is (no corpus is exported into it)."""
    keys = ("name", *DATA_SOURCE_KEYS)
    override = {k: data_cfg.get(k) for k in keys} if data_cfg is not None else {}
    if data_path:
        override["path"] = str(data_path)
    if data_cfg is not None and not override.get("path"):
        raise UserError(f"data={override.get('name')}: give its MIDI folder with data_path=/the/folder")
    return override or None


def training_data(loaded: LoadedCheckpoint, data_override: dict | None = None) -> MidiDataModule:
    """The data module the checkpoint was trained on: its data settings and where they came from
    (`data_source`), `data_override` keys (e.g. path=/moved/folder) on top."""
    source = dict(loaded.data_source or {})
    cfg = {**source, **loaded.data, **(data_override or {})}
    if not cfg.get("path"):
        raise UserError(
            f"{loaded.path} does not say where its training data came from (trained before that was stored): "
            "pass data.path=/the/midi/folder (and data.corpus=bach|folk for a bundled corpus)"
        )
    return MidiDataModule.with_tokenizer(cfg, loaded.tokenizer)


def spread_segments(dm: MidiDataModule, split: str, most: int | None = None) -> list[list[int]]:
    """The token ids of a split's segments in order, every k-th one when `most` caps them (a spread over
    its pieces); UserError for an empty split."""
    dm.prepare_data()
    dm.setup("fit")
    dataset = dm.datasets.get(split)
    if dataset is None or len(dataset.arrays) == 0:
        raise UserError(f"the {split} split of {dm.settings.name} holds no segments")
    return dataset.spread(most)


@torch.no_grad()
def split_latents(
    loaded: LoadedCheckpoint, dm: MidiDataModule, split: str, max_segments: int | None, batch_size: int,
) -> tuple[torch.Tensor, np.ndarray]:  # fmt: skip
    """Posterior means and attribute values of a split: (N, c) and (N, A), one row per latent (bar or segment).

    Segments are taken in order, every k-th one when `max_segments` caps them (a spread over pieces).
    """
    segments = spread_segments(dm, split, max_segments)
    rules = token_rules(loaded.tokenizer, grammar=False)
    mu, _ = encode_segments(loaded.model, segments, batch_size, rules.bar_ids)  # (N, c) or (N, K, c)
    reader = AttributeReader(loaded.tokenizer, dm.settings.attributes)
    values = latent_values(reader, segments, loaded.model.per_bar)  # (K_i or 1, A) each
    rows = [mu[i, : len(v)] if loaded.model.per_bar else mu[i : i + 1] for i, v in enumerate(values)]
    return torch.cat(rows).float().cpu(), np.concatenate(values)


def quarter_difference(z: torch.Tensor, values: np.ndarray) -> torch.Tensor:
    """Mean z of the rows ranked in the top quarter by `values` (N,) minus the bottom quarter's: (c,).
    Rows whose value is NaN are left out."""
    keep = np.flatnonzero(~np.isnan(values))
    if len(keep) < 8:
        raise UserError(f"{len(keep)} latents with a defined value: too few for attribute vectors (need 8)")
    order = keep[np.argsort(values[keep], kind="stable")]
    q = len(order) // 4
    return z[order[-q:]].mean(0) - z[order[:q]].mean(0)


@dataclass(frozen=True)
class VectorSettings:
    """Which latents an attribute vector averages (configs/attributes.yaml; `scripts/evaluate.py vectors=true`)."""

    split: str = "train"  # the split of the checkpoint's training data whose latents are averaged
    max_segments: int | None = 4000  # at most this many segments, spread over the split (None: all)
    batch_size: int = 32


def compute_attribute_vectors(
    loaded: LoadedCheckpoint, settings: VectorSettings | None = None, data_override: dict | None = None
) -> AttributeVectors:
    """Attribute vectors of a checkpoint from a split of its training data (see the module docstring)."""
    settings = settings or VectorSettings()
    dm = training_data(loaded, data_override)
    z, values = split_latents(loaded, dm, settings.split, settings.max_segments, settings.batch_size)
    vectors = torch.stack([quarter_difference(z, values[:, a]) for a in range(len(ATTRIBUTES))])
    log.info("attribute vectors from %d %s latents of %s/%s", len(z), loaded.model.cfg.latent, dm.settings.name, settings.split)
    bins = AttributeBins.fit(values, dm.settings.attributes)
    return AttributeVectors(ATTRIBUTES, vectors, bins, loaded.model.cfg.latent, len(z), str(loaded.path))


register_schema("attributes", VectorSettings)
