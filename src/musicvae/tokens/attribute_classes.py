"""The classes of the per-bar attributes (`musicvae.tokens.attributes`): `AttributeBins` turns attribute
values into classes 0..N_CLASSES-1 by quantiles of a training set (MuseMorphose's binning); `to_dict` /
`from_dict` let a checkpoint carry the edges. `latent_values` / `latent_classes` pair them with a
model's latents (one per bar, or one per segment: its bars' mean).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from musicvae.tokens.attributes import ATTRIBUTES, AttributeDefinitions, AttributeReader

N_CLASSES = 8
NAN_CLASS = N_CLASSES // 2  # class of an undefined value (mean_pitch of a bar without pitched notes)


@dataclass
class AttributeBins:
    """Inner class edges per attribute: N_CLASSES - 1 nondecreasing quantile edges of a training set.

    A value v gets class `searchsorted(edges, v, side="right")` (the number of edges <= v), so
    classes are monotone in the value. NaN gets `NAN_CLASS` (the middle class: no information).

    Ties: equal values always share a class. `fit` puts a block of equal training values in the class
    where the middle of its share of the sorted data falls (for distinct values: exact octiles), and an
    edge halfway between the last value of one class and the first of the next. So a heavily tied
    attribute (note_density, empty bars) leaves some classes empty instead of splitting a tie, and a
    constant attribute lands in the middle class (values above it in the top class, below in class 0).
    """

    edges: dict[str, list[float]]
    definitions: AttributeDefinitions = field(default_factory=AttributeDefinitions)  # how the values were read

    def __post_init__(self):
        if set(self.edges) != set(ATTRIBUTES):
            raise ValueError(f"AttributeBins needs edges for exactly {ATTRIBUTES}, got {sorted(self.edges)}")
        for name in ATTRIBUTES:
            e = [float(x) for x in self.edges[name]]
            if len(e) != N_CLASSES - 1 or not all(math.isfinite(x) for x in e):
                raise ValueError(f"edges[{name!r}] must be {N_CLASSES - 1} finite numbers, got {e}")
            if any(b < a for a, b in zip(e, e[1:], strict=False)):
                raise ValueError(f"edges[{name!r}] must be nondecreasing, got {e}")
            self.edges[name] = e

    @classmethod
    def fit(cls, values: np.ndarray, definitions: AttributeDefinitions | None = None) -> AttributeBins:
        """Edges from training values (N, len(ATTRIBUTES)) read under `definitions`; NaN ignored.

        ValueError for another shape, an infinite value, or an attribute without any finite value.
        """
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(ATTRIBUTES):
            raise ValueError(f"values of shape {values.shape}: expected (N, {len(ATTRIBUTES)})")
        if np.isinf(values).any():
            raise ValueError("attribute values must be finite or NaN")
        edges = {}
        for a, name in enumerate(ATTRIBUTES):
            column = values[:, a]
            column = column[~np.isnan(column)]
            if column.size == 0:
                raise ValueError(f"no value of {name!r} to fit bins on")
            edges[name] = _tie_aware_edges(column)
        return cls(edges, definitions or AttributeDefinitions())

    def reader(self, tokenizer) -> AttributeReader:
        """The reader of attribute values under the definitions these edges were fitted with."""
        return AttributeReader(tokenizer, self.definitions)

    def histogram(self, values: np.ndarray) -> dict[str, list[int]]:
        """Latents per class of each attribute: values (N, len(ATTRIBUTES)) -> {name: N_CLASSES counts}
        (NaN values, which get NAN_CLASS without telling anything, left out)."""
        values = np.asarray(values, dtype=np.float64).reshape(-1, len(ATTRIBUTES))
        classes = self.classes(values)
        return {name: np.bincount(classes[~np.isnan(values[:, a]), a], minlength=N_CLASSES).tolist()
                for a, name in enumerate(ATTRIBUTES)}  # fmt: skip

    def classes(self, values: np.ndarray) -> np.ndarray:
        """(..., len(ATTRIBUTES)) values -> int64 classes of the same shape, in 0..N_CLASSES-1."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 0 or values.shape[-1] != len(ATTRIBUTES):
            raise ValueError(f"values of shape {values.shape}: expected (..., {len(ATTRIBUTES)})")
        out = np.empty(values.shape, dtype=np.int64)
        for a, name in enumerate(ATTRIBUTES):
            column = values[..., a]
            found = np.searchsorted(np.asarray(self.edges[name]), column, side="right")
            out[..., a] = np.where(np.isnan(column), NAN_CLASS, found)
        return out

    def to_dict(self) -> dict:
        """A JSON/YAML-able dict (plain floats) that `from_dict` turns back into equal bins."""
        return {
            "n_classes": N_CLASSES,
            "edges": {name: [float(x) for x in self.edges[name]] for name in ATTRIBUTES},
            "definitions": self.definitions.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> AttributeBins:
        """Inverse of `to_dict`; ValueError if it was made for another number of classes or attributes.
        Bins saved before definitions were stored were read with the defaults (ours)."""
        if int(d.get("n_classes", N_CLASSES)) != N_CLASSES:
            raise ValueError(f"bins for {d['n_classes']} classes, this code uses {N_CLASSES}")
        edges = {name: [float(x) for x in edges] for name, edges in dict(d["edges"]).items()}
        return cls(edges, AttributeDefinitions.from_dict(d.get("definitions")))


def _tie_aware_edges(x: np.ndarray) -> list[float]:
    """N_CLASSES - 1 edges for the finite values x (see AttributeBins: ties, constant attribute)."""
    distinct, counts = np.unique(x, return_counts=True)
    upto = np.cumsum(counts)
    # class of each distinct value: where the middle of its block of sorted ranks falls
    cls = np.minimum((upto * 2 - counts) * N_CLASSES // (2 * x.size), N_CLASSES - 1)
    edges = []
    for k in range(1, N_CLASSES):
        j = int(np.searchsorted(cls, k, side="left"))  # first distinct value of class >= k
        if j == 0:
            edge = distinct[0]  # every value is in class >= k
        elif j == len(distinct):
            edge = np.nextafter(distinct[-1], np.inf)  # no value reaches class k
        else:
            edge = (distinct[j - 1] + distinct[j]) / 2
            if edge <= distinct[j - 1]:  # adjacent floats: the midpoint rounds down
                edge = distinct[j]
        edges.append(float(edge))
    return edges


def latent_values(reader: AttributeReader, segments, per_bar: bool) -> list[np.ndarray]:
    """Attribute values per latent of each segment (token ids, no BOS/EOS): (K_i, A) per bar, or (1, A)
    per segment (the mean over its bars; NaN where no bar defines the value)."""
    out = []
    for ids in segments:
        bars = reader.bars(np.asarray(ids))
        if per_bar:
            out.append(bars)
        elif len(bars):
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a segment without pitched notes: NaN mean
                out.append(np.nanmean(bars, axis=0, keepdims=True))
        else:
            out.append(np.full((1, len(ATTRIBUTES)), np.nan))
    return out


def latent_classes(
    reader: AttributeReader, bins: AttributeBins, segments, names, per_bar: bool, k: int | None = None
) -> np.ndarray:
    """Classes of the attributes `names` per latent of each segment: (N, K, len(names)) per bar, K = `k` or
    the most bars of a segment (missing bars: NAN_CLASS), or (N, len(names)) per segment."""
    columns = [ATTRIBUTES.index(n) for n in names]
    rows = [bins.classes(v)[:, columns] for v in latent_values(reader, segments, per_bar)]
    if not per_bar:
        return np.concatenate(rows) if rows else np.zeros((0, len(columns)), dtype=np.int64)
    k = k or max((len(r) for r in rows), default=1)
    out = np.full((len(rows), k, len(columns)), NAN_CLASS, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : min(k, len(r))] = r[:k]
    return out


@dataclass(frozen=True)
class SegmentLabeler:
    """Classes of the attributes `names` per latent of token segments (no BOS/EOS), computed where batches are
    made (a DataLoader worker, on the CPU): the training step gets them with its batch, with no device sync."""

    reader: AttributeReader
    bins: AttributeBins
    names: tuple[str, ...]
    per_bar: bool

    def __call__(self, segments) -> np.ndarray:
        """(B, K, A) per bar (K: the batch's most bars), (B, A) per segment; int64."""
        return latent_classes(self.reader, self.bins, segments, self.names, self.per_bar)
