"""Measuring control: does asking for a class (or moving z along an attribute vector) give it?

    result = evaluate_control(loaded, training_data(loaded), ControlSettings(protocols=("absolute", "shift")))
    print(control_table(result))                          # scripts/evaluate.py control=true writes both

Spearman ρ between requested and achieved class per protocol (see `ControlSettings`), beside its copy and
shuffled-request baselines, |ρ| of the other attributes and fidelity to the input, with bootstrap intervals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.stats
import torch

from musicvae.config import register_schema
from musicvae.data.datamodule import MidiDataModule
from musicvae.data.parallel import track_progress
from musicvae.errors import UserError
from musicvae.generation.attribute_vectors import AttributeVectors, spread_segments
from musicvae.generation.decode import SamplingConfig
from musicvae.generation.inference import (
    LoadedCheckpoint,
    apply_class_changes,
    count_bars,
    encode_segments,
    reconstruct_segments,
    token_rules,
)
from musicvae.generation.render import tokens_to_pretty_midi
from musicvae.metrics.music import chroma_similarity, groove_similarity
from musicvae.tokens.attribute_classes import N_CLASSES, latent_classes
from musicvae.tokens.attributes import ATTRIBUTES

PROTOCOLS = ("absolute", "shift")


@dataclass
class ControlSettings:
    """What `scripts/evaluate.py control=true` measures (configs/evaluate.yaml).

    Protocols of attribute-conditioned decoding (models trained with `model.attributes`):
    - absolute (ours): every bar asked for each class of `classes` of one attribute, the other kept at the
      bar's own. The requests are independent of the input, so a decoder that ignores them scores ρ = 0.
    - shift (MuseMorphose's, its generation script): each segment's own classes + δ, one δ per segment and
      attribute drawn uniformly from [-shift_range, shift_range], every bar of the segment, both attributes
      shifted in the same decode, clipped to 0-7; decoded at `shift_temperature` (its 1.2) and `top_p` (its
      0.9); `shift_draws` draws per segment. The requests correlate with the input's own classes, so a
      decoder that copies its input already scores ρ well above 0: the copy baseline is the floor to beat.
    Baselines, on the same bars and with the same requests (`baselines`):
    - copy: the decoder asked for each bar's own classes; ρ between the protocol's requests and what it
      gives. What a decoder that ignores the request scores.
    - shuffled: the protocol's requests of the scored attributes permuted over all its (decode, bar)
      cells and decoded; ρ between the request each bar got and what it gives. The requests keep the
      protocol's distribution but no longer correlate with the input, so copying scores ~0 here.
    """

    split: str = "test"
    n_segments: int = 32  # segments of the split, spread over it
    classes: tuple[int, ...] = tuple(range(N_CLASSES))  # absolute: requested classes
    amounts: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)  # attribute vectors: z + amount x vector
    vector_attributes: tuple[str, ...] = ATTRIBUTES  # the vectors scored (each costs len(amounts) decodes)
    temperature: float = 1.0  # absolute protocol and attribute vectors
    top_p: float = 0.9
    batch_size: int = 16
    seed: int = 0
    protocols: tuple[str, ...] = ("absolute",)
    shift_range: int = 3  # shift: δ uniform in [-shift_range, shift_range]
    shift_draws: int = 4  # shift: δ draws per segment (each a decode of every segment)
    shift_temperature: float = 1.2  # shift: MuseMorphose's sampling temperature (its nucleus p 0.9 is top_p)
    baselines: bool = True  # the copy baseline and shuffled requests, per protocol

    @staticmethod
    def shape_config(values: dict) -> dict:
        """The defaults as configs/evaluate.yaml has them: the protocols' settings under `control`."""
        keys = ("shift_range", "shift_draws", "shift_temperature", "baselines")
        control = {"protocol": values.pop("protocols"), **{k: values.pop(k) for k in keys}}
        return {**values, "control": control}

    @classmethod
    def from_cfg(cls, cfg) -> ControlSettings:
        """From configs/evaluate.yaml's node, shaped as `shape_config` says (control.protocol: one name or a list)."""
        control = cfg.control
        protocol = control.protocol
        return cls(
            split=cfg.split, n_segments=int(cfg.n_segments), classes=tuple(int(c) for c in cfg.classes),
            amounts=tuple(float(a) for a in cfg.amounts), vector_attributes=tuple(cfg.vector_attributes),
            temperature=float(cfg.temperature), top_p=float(cfg.top_p), batch_size=int(cfg.batch_size), seed=int(cfg.seed),
            protocols=(str(protocol),) if isinstance(protocol, str) else tuple(str(p) for p in protocol),
            shift_range=int(control.shift_range), shift_draws=int(control.shift_draws),
            shift_temperature=float(control.shift_temperature), baselines=bool(control.baselines),
        )  # fmt: skip

    def __post_init__(self):
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if unknown or not self.protocols:
            raise UserError(f"control.protocol={list(self.protocols)}: choose from {', '.join(PROTOCOLS)} (or both)")
        if self.shift_range < 1 or self.shift_draws < 1:
            raise UserError(f"control.shift_range and control.shift_draws must be >= 1 (got {self.shift_range}, {self.shift_draws})")


def spearman(x, y) -> float | None:
    """Spearman ρ of two equal-length sequences; None where it is undefined (a constant side)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return None
    return float(scipy.stats.spearmanr(x, y).statistic)


BOOTSTRAP_RESAMPLES = 1000


def _others_abs(requested, achieved: np.ndarray, others: tuple[str, ...]) -> float | None:
    defined = [abs(v) for b in others if (v := spearman(requested, achieved[:, ATTRIBUTES.index(b)])) is not None]
    return float(np.mean(defined)) if defined else None


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _scores(requested: list, achieved: np.ndarray, segment: np.ndarray, attribute: str, others: tuple[str, ...],
            seed: int = 0, copy: np.ndarray | None = None,
            shuffled: tuple[np.ndarray, np.ndarray] | None = None) -> dict:  # fmt: skip
    """ρ(requested, achieved class of the attribute) and mean |ρ| of the others' achieved classes; with `copy`
    (achieved classes of the copy decodes, rows as `achieved`) the copy baseline's ρ and the paired difference
    ρ - copy ρ; with `shuffled` (requests, achieved) the shuffled-request ρ. Each with a 95% interval from one
    bootstrap over segments (rows of one segment, its bars and its requests, are resampled together, the
    same rows for every number: the difference is paired)."""
    requested = np.asarray(requested, dtype=np.float64)
    column = ATTRIBUTES.index(attribute)

    def numbers(rows) -> dict[str, float | None]:
        out = {"spearman": spearman(requested[rows], achieved[rows, column]),
               "others_abs_spearman": _others_abs(requested[rows], achieved[rows], others)}  # fmt: skip
        if copy is not None:
            out["copy_spearman"] = spearman(requested[rows], copy[rows, column])
            out["minus_copy"] = _difference(out["spearman"], out["copy_spearman"])
        if shuffled is not None:
            out["shuffled_spearman"] = spearman(shuffled[0][rows], shuffled[1][rows, column])
        return out

    point = numbers(np.arange(len(requested)))
    rows_of = [np.flatnonzero(segment == s) for s in np.unique(segment)]
    rng = np.random.default_rng(seed)
    boot: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(BOOTSTRAP_RESAMPLES):
        rows = np.concatenate([rows_of[i] for i in rng.integers(0, len(rows_of), len(rows_of))])
        for k, v in numbers(rows).items():
            if v is not None:
                boot[k].append(v)
    result: dict = {}
    for k, v in point.items():
        result[k] = v
        result[f"{k}_ci95"] = [float(np.percentile(boot[k], 2.5)), float(np.percentile(boot[k], 97.5))] if boot[k] else None
    return {**result, "others": list(others), "n": len(requested), "segments": len(rows_of)}


@dataclass
class _Rows:
    """Where the latents of the evaluated segments sit in a (N, [K,] A) class tensor, and back: a row per bar
    of each segment (per-bar model) or per segment."""

    n_bars: list[int]
    per_bar: bool

    def take(self, t: torch.Tensor) -> torch.Tensor:
        """(N, [K,] A) -> (rows, A)."""
        return torch.cat([t[i, :n] for i, n in enumerate(self.n_bars)]) if self.per_bar else t

    def put(self, t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """A copy of t (N, [K,] A) with its rows replaced by `rows` (rows, A)."""
        if not self.per_bar:
            return rows.clone()
        out, start = t.clone(), 0
        for i, n in enumerate(self.n_bars):
            out[i, :n] = rows[start : start + n]
            start += n
        return out


def absolute_requests(own: torch.Tensor, names, classes) -> list[tuple[tuple[str, ...], list[torch.Tensor]]]:
    """Ours: per attribute, one decode per class with that class asked in every bar, the others at their own."""
    return [((a,), [apply_class_changes(own, names, {a: (False, int(c))}) for c in classes]) for a in names]


def shift_requests(own: torch.Tensor, names, draws: int, max_shift: int,
                   rng: np.random.Generator) -> list[tuple[tuple[str, ...], list[torch.Tensor]]]:  # fmt: skip
    """MuseMorphose's: per draw, each segment's own classes + δ (one δ per segment and attribute, uniform in
    [-max_shift, max_shift], the same in all its bars), both attributes at once, clipped to 0..N_CLASSES-1."""
    requests = []
    for _ in range(draws):
        delta = torch.from_numpy(rng.integers(-max_shift, max_shift + 1, (own.shape[0], own.shape[-1]))).to(own)
        requests.append((own + (delta[:, None, :] if own.dim() == 3 else delta)).clamp(0, N_CLASSES - 1))
    return [(tuple(names), requests)]


def shuffle_requests(requests: list[torch.Tensor], rows: _Rows, columns: list[int], rng) -> list[torch.Tensor]:
    """The requests of `columns` permuted over all (decode, row) cells of a protocol's decodes, jointly; the
    other columns kept."""
    cells = torch.stack([rows.take(r) for r in requests])  # (D, rows, A)
    flat = cells.reshape(-1, cells.shape[-1]).clone()
    order = torch.from_numpy(rng.permutation(len(flat))).to(flat.device)
    flat[:, columns] = flat[order][:, columns]
    return [rows.put(r, f) for r, f in zip(requests, flat.view_as(cells), strict=True)]


class _Decodes:
    """The evaluated segments of one control evaluation and what decoding them gives: each call decodes every
    segment from z with attribute classes and returns the achieved classes, a row per latent; the requested
    decodes also add their chroma / groove similarity to the input."""

    def __init__(self, loaded: LoadedCheckpoint, segments: list[list[int]], settings: ControlSettings, bins):
        self.model, self.tok, self.settings, self.bins = loaded.model, loaded.tokenizer, settings, bins
        self.segments = segments
        self.rules, self.reader = token_rules(self.tok), bins.reader(self.tok)
        self.mu, _ = encode_segments(self.model, segments, settings.batch_size, self.rules.bar_ids)  # (N, [K,] c)
        self.k = self.mu.shape[1] if self.model.per_bar else None
        self.n_bars = [count_bars(s, self.rules) for s in segments]
        self.rows = _Rows(self.n_bars, self.model.per_bar)
        self.segment_of_row = np.repeat(np.arange(len(segments)), self.n_bars) if self.model.per_bar else np.arange(len(segments))
        self.originals = [tokens_to_pretty_midi(self.tok, s)[0] for s in segments]
        self.chroma: list[float | None] = []
        self.groove: list[float | None] = []

    def own(self, names) -> torch.Tensor:
        """The inputs' own classes of `names` per latent: (N, [K,] len(names))."""
        own = latent_classes(self.reader, self.bins, self.segments, names, self.model.per_bar, self.k)
        return torch.from_numpy(own).to(self.mu.device)

    def __call__(self, z: torch.Tensor, attrs: torch.Tensor | None, temperature: float, fidelity: bool = True) -> np.ndarray:
        """Classes of each segment decoded from z with `attrs`, rows as the inputs' latents: (rows, A)."""
        sampling = SamplingConfig(temperature, 0, self.settings.top_p, self.model.cfg.max_len - 1)
        gen = torch.Generator(device=self.mu.device).manual_seed(self.settings.seed)  # the same noise for every decode
        decoded = reconstruct_segments(self.model, self.segments, z, sampling, self.rules, gen, self.settings.batch_size, attrs)
        if fidelity:
            for original, ids in zip(self.originals, decoded, strict=True):
                out = tokens_to_pretty_midi(self.tok, ids)[0]
                self.chroma.append(chroma_similarity(original, out))
                self.groove.append(groove_similarity(original, out))
        got = latent_classes(self.reader, self.bins, decoded, ATTRIBUTES, self.model.per_bar, self.k)
        return np.concatenate([g[:n] for g, n in zip(got, self.n_bars, strict=True)]) if self.model.per_bar else got


def _protocol_scores(decodes: _Decodes, protocol: str, names: list[str]) -> dict:
    """{attribute: scores} of one protocol of attribute-conditioned decoding, with its baselines."""
    settings, rows = decodes.settings, decodes.rows
    own = decodes.own(names)
    rng = np.random.default_rng(settings.seed)
    if protocol == "absolute":
        groups, temperature = absolute_requests(own, names, settings.classes), settings.temperature
    else:
        groups = shift_requests(own, names, settings.shift_draws, settings.shift_range, rng)
        temperature = settings.shift_temperature
    copy = decodes(decodes.mu, own, temperature, fidelity=False) if settings.baselines else None
    scores = {}
    for scored, requests in groups:
        label = f"control ({protocol}): {', '.join(scored)}"
        got = np.concatenate([decodes(decodes.mu, r, temperature) for r in track_progress(requests, len(requests), label)])
        asked = np.concatenate([rows.take(r).cpu().numpy() for r in requests])  # (D * rows, A_model)
        if settings.baselines:
            mixed = shuffle_requests(requests, rows, [names.index(a) for a in scored], rng)
            label += " (shuffled requests)"
            mixed_got = np.concatenate([decodes(decodes.mu, r, temperature, fidelity=False)
                                        for r in track_progress(mixed, len(mixed), label)])  # fmt: skip
            mixed_asked = np.concatenate([rows.take(r).cpu().numpy() for r in mixed])
        seg = np.tile(decodes.segment_of_row, len(requests))
        for a in scored:
            col = names.index(a)
            others = tuple(n for n in names if n != a) or tuple(n for n in ATTRIBUTES if n != a)
            baselines = {"copy": np.tile(copy, (len(requests), 1)), "shuffled": (mixed_asked[:, col], mixed_got)} \
                if settings.baselines else {}  # fmt: skip
            scores[a] = _scores(asked[:, col], got, seg, a, others, settings.seed, **baselines)
    return {a: scores[a] for a in names}


def _vector_scores(decodes: _Decodes, vectors: AttributeVectors, attrs: torch.Tensor | None) -> dict:
    """{attribute: scores} of attribute vectors: ρ between the amount z moved along the vector and the class."""
    settings, result = decodes.settings, {}
    for a in settings.vector_attributes:
        requested, got = [], []
        for amount in track_progress(settings.amounts, len(settings.amounts), f"attribute vector: {a}"):
            got.append(decodes(decodes.mu + float(amount) * vectors.vector(a).to(decodes.mu.device), attrs, settings.temperature))
            requested += [float(amount)] * len(decodes.segment_of_row)
        seg = np.tile(decodes.segment_of_row, len(settings.amounts))
        result[a] = _scores(requested, np.concatenate(got), seg, a, tuple(n for n in ATTRIBUTES if n != a), settings.seed)
    return result


@torch.no_grad()
def evaluate_control(loaded: LoadedCheckpoint, dm: MidiDataModule, settings: ControlSettings,
                     vectors: AttributeVectors | None = None) -> dict:  # fmt: skip
    """Controllability (Spearman ρ between requested and achieved class), disentanglement (|ρ| of the other
    attributes) and fidelity (chroma / groove similarity to the input) on a split of the checkpoint's data.

    Attribute-conditioned models (`model.attributes`): each segment decoded from its own z (the posterior
    mean) under each protocol of `settings.protocols` with its baselines (see `ControlSettings`).
    Attribute vectors (`vectors`, any model): each segment decoded from z + amount x vector for each amount;
    ρ between amount and achieved class. Achieved classes are read from the decoded tokens, per bar for a
    per-bar model (a row per bar), per segment otherwise, with the checkpoint's class edges and definitions.
    """
    bins = loaded.attribute_bins or (vectors.bins if vectors is not None else None)
    if bins is None:
        raise UserError(f"{loaded.path} has no attributes and no attribute vectors: run scripts/attributes.py first, "
                        "or train with model.attributes=[rhythm,polyphony]")  # fmt: skip
    decodes = _Decodes(loaded, spread_segments(dm, settings.split, settings.n_segments), settings, bins)
    names = list(loaded.model.cfg.attributes)
    result: dict = {"control": {p: _protocol_scores(decodes, p, names) for p in (settings.protocols if names else ())}}
    result["vectors"] = _vector_scores(decodes, vectors, decodes.own(names) if names else None) if vectors else {}
    result["fidelity"] = {"chroma_sim": _finite_mean(decodes.chroma), "groove_sim": _finite_mean(decodes.groove),
                          "n_decodes": len(decodes.chroma)}  # fmt: skip
    result["settings"] = {**asdict(settings), "segments": len(decodes.segments), "latent": loaded.model.cfg.latent,
                          "attributes": names, "definitions": bins.definitions.to_dict(),
                          "checkpoint": str(loaded.path)}  # fmt: skip
    return result


def _finite_mean(values) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def flatten_scores(result: dict) -> dict[str, float | None]:
    """evaluation.json's flat keys: control.<protocol>.<attribute>.{spearman, others_abs_spearman, copy_spearman,
    minus_copy, shuffled_spearman}, vectors.<attribute>.{spearman, others_abs_spearman}, fidelity.chroma_sim,
    fidelity.groove_sim."""
    flat = {}
    for protocol, scores in result["control"].items():
        for a, s in scores.items():
            for key in ("spearman", "others_abs_spearman", "copy_spearman", "minus_copy", "shuffled_spearman"):
                if key in s:
                    flat[f"control.{protocol}.{a}.{key}"] = s[key]
    for a, s in result["vectors"].items():
        flat[f"vectors.{a}.spearman"] = s["spearman"]
        flat[f"vectors.{a}.others_abs_spearman"] = s["others_abs_spearman"]
    flat.update({f"fidelity.{k}": v for k, v in result["fidelity"].items() if k != "n_decodes"})
    return flat


def _fmt(value: float | None, interval: list[float] | None = None) -> str:
    text = "–" if value is None else f"{value:.3f}"
    return text + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


PROTOCOL_LABELS = {
    "absolute": "absolute (ours): every bar asked for each class of one attribute",
    "shift": "shift (MuseMorphose's): own class + δ, δ uniform in [−r, r] per segment and attribute, both at once",
}


def control_table(result: dict) -> str:
    """The markdown tables of a control evaluation (evaluation.md): per protocol, ρ beside its baselines."""
    lines = []
    settings = result.get("settings", {})
    for protocol, scores in result["control"].items():
        lines += [f"**Attribute-conditioned, protocol {PROTOCOL_LABELS[protocol]}**", "",
                  "| attribute | ρ requested vs achieved [95% CI] | copy baseline ρ | ρ − copy (paired) | "
                  "shuffled-request ρ | mean abs ρ of the others | others | rows (segments) |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for a, s in scores.items():
            lines.append(
                f"| {a} | {_fmt(s['spearman'], s['spearman_ci95'])} | {_fmt(s.get('copy_spearman'), s.get('copy_spearman_ci95'))} | "
                f"{_fmt(s.get('minus_copy'), s.get('minus_copy_ci95'))} | "
                f"{_fmt(s.get('shuffled_spearman'), s.get('shuffled_spearman_ci95'))} | "
                f"{_fmt(s['others_abs_spearman'], s['others_abs_spearman_ci95'])} | {', '.join(s['others'])} | "
                f"{s['n']} ({s['segments']}) |"
            )  # fmt: skip
        lines.append("")
    if result["vectors"]:
        lines += ["**Attribute vectors** (z + amount × vector)", "",
                  "| attribute | ρ amount vs achieved [95% CI] | mean abs ρ of the others [95% CI] | others | rows (segments) |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for a, s in result["vectors"].items():
            lines.append(f"| {a} | {_fmt(s['spearman'], s['spearman_ci95'])} | "
                         f"{_fmt(s['others_abs_spearman'], s['others_abs_spearman_ci95'])} | {', '.join(s['others'])} | "
                         f"{s['n']} ({s['segments']}) |")  # fmt: skip
        lines.append("")
    definitions = settings.get("definitions")
    if definitions:
        lines.append(f"Attributes read as rhythm={definitions['rhythm']}, polyphony={definitions['polyphony']} "
                     "(the checkpoint's class edges).")  # fmt: skip
    lines.append("Copy baseline: the decoder asked for each bar's own classes, scored against the protocol's requests "
                 "(what ignoring the request scores). Shuffled: the protocol's requests permuted over its bars and "
                 "decodes, scored against the request each bar got (copying scores ~0). Intervals: one bootstrap over "
                 f"the segments (their bars and requests resampled together), {BOOTSTRAP_RESAMPLES} resamples.")  # fmt: skip
    f = result["fidelity"]
    lines += ["", f"Fidelity to the input over all {f['n_decodes']} requested decodes: chroma similarity "
              f"{_fmt(f['chroma_sim'])}, groove similarity {_fmt(f['groove_sim'])}."]  # fmt: skip
    return "\n".join(lines) + "\n"


register_schema("evaluate", ControlSettings)
