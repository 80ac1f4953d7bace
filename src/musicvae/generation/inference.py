"""Inference on a trained checkpoint, below the commands that use it (sampling, control, evaluation):

    loaded = load_checkpoint("run/checkpoints/last.ckpt")   # model + tokenizer + data settings (+ class edges)
    rules = token_rules(loaded.tokenizer)                    # banned ids, Bar ids, the REMI grammar mask
    mu, logvar = encode_segments(loaded.model, segments, 8, rules.bar_ids)
    ids = reconstruct_segments(loaded.model, segments, mu, SamplingConfig(), rules, generator, 8)

`reconstruct_and_sample` is what the media logged while training decode. A whole MIDI file, as
`sample.py mode=reconstruct` and the whole-piece fidelity read it: `encode_piece`, then `decode_piece`
(its skeleton kept: bar k of the output carries the input's bar k time signature). Also a piece's bar
latents (`piece_tokens`, `bar_latents`) and the attribute classes a model with `model.attributes` decodes
with (`segment_classes`, `input_classes`, `apply_class_changes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from musicvae.data.config import DataConfig
from musicvae.data.loading import collate_segments
from musicvae.data.segments import midi_to_windows
from musicvae.errors import UserError
from musicvae.generation.decode import (
    SamplingConfig,
    TokenRules,
    bar_time_sigs,
    decode_latents,
    slerp,
    split_bars,
)
from musicvae.models.checkpoint import ATTRIBUTE_BINS_KEY, model_from_checkpoint, read_checkpoint
from musicvae.models.vae import MusicVAE, cat_latents
from musicvae.tokens import EOS_ID
from musicvae.tokens.attribute_classes import N_CLASSES, AttributeBins, latent_classes
from musicvae.tokens.attributes import ATTRIBUTES, AttributeReader
from musicvae.tokens.tokenize import bar_ids, tokenizer_from_dict


@dataclass
class LoadedCheckpoint:
    model: MusicVAE
    tokenizer: object  # miditok tokenizer
    data: dict  # data settings of the training run (bars, hop_bars, max_tokens, ...)
    path: Path
    data_source: dict | None = None  # where the training data came from (corpus, path, split fractions)
    attribute_bins: AttributeBins | None = None  # model.attributes: the class edges it trained with

    @property
    def window_bars(self) -> int:
        """Bars per training segment: the most one decoding pass holds."""
        return int(self.data.get("bars", DataConfig.bars))


def load_checkpoint(path: str | Path, device: str = "cpu") -> LoadedCheckpoint:
    """Rebuild the model and tokenizer from a training checkpoint; one clear UserError if it can't."""
    ckpt = read_checkpoint(path, device)
    hp = ckpt["hyper_parameters"]
    if not hp.get("tokenizer"):
        raise UserError(f"{path} carries no tokenizer: it cannot be decoded to MIDI")
    model = model_from_checkpoint(ckpt, path).to(device).eval()
    data = dict(hp.get("data") or {})
    bins = AttributeBins.from_dict(ckpt[ATTRIBUTE_BINS_KEY]) if ckpt.get(ATTRIBUTE_BINS_KEY) else None
    return LoadedCheckpoint(model, tokenizer_from_dict(hp["tokenizer"]), data, Path(path), hp.get("data_source"), bins)


def token_rules(tokenizer, grammar: bool = True) -> TokenRules:
    """The decoding rules of a tokenizer: its special tokens except EOS are never drawn (PAD, BOS, MASK),
    its Bar ids count bars, and with `grammar` the REMI grammar masks what may come next."""
    banned = [tokenizer.vocab[t] for t in tokenizer.special_tokens if tokenizer.vocab[t] != EOS_ID]
    mask = None
    if grammar:
        from musicvae.tokens.grammar import RemiGrammar

        try:
            mask = RemiGrammar(tokenizer)
        except ValueError as e:
            raise UserError(f"grammar=true: {e}; decode without the grammar mask with grammar=false") from None
    return TokenRules(banned=banned, bar_ids=bar_ids(tokenizer), grammar=mask)


@torch.no_grad()
def encode_segments(
    model: MusicVAE, segments: list[list[int]], batch_size: int, bar_ids: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token segments (no BOS/EOS) -> mu, logvar: (N, c), or (N, K, c) per bar (K: the most bars of a
    segment; a shorter segment's missing bars hold the prior, 0)."""
    mus, logvars = [], []
    device = next(model.parameters()).device
    for i in range(0, len(segments), batch_size):
        tokens, mask, bars = collate_segments([torch.tensor(s) for s in segments[i : i + batch_size]], bar_ids)
        mu, logvar = model.encode(tokens.to(device), mask.to(device), bars.to(device))
        mus.append(mu)
        logvars.append(logvar)
    return cat_latents(mus, model.per_bar), cat_latents(logvars, model.per_bar)


def count_bars(ids: list[int], rules: TokenRules) -> int:
    return sum(t in rules.bar_ids for t in ids)


def reconstruct_segments(
    model: MusicVAE, segments: list[list[int]], z: torch.Tensor, cfg: SamplingConfig, rules: TokenRules,
    generator, batch_size: int, attributes: torch.Tensor | None = None, skeleton: bool = False,
) -> list[list[int]]:  # fmt: skip
    """Decode each segment's z (N, c) or (N, K, c) into as many bars as the segment holds (with the
    grammar: exactly), so a reconstruction lines up with its input bar for bar. attributes: (N, [K,] A)
    classes for a model with attributes. skeleton (with the grammar): each bar keeps its segment's time
    signature."""
    counts = [count_bars(s, rules) for s in segments]
    keep = skeleton and rules.grammar is not None
    out: list[list[int] | None] = [None] * len(segments)
    for n_bars in sorted(set(counts)):
        rows = [i for i, c in enumerate(counts) if c == n_bars]
        zs, attrs = (_rows(t, rows, n_bars if z.dim() == 3 else None) for t in (z, attributes))
        time_sigs = torch.tensor([bar_time_sigs(segments[i], rules) for i in rows], device=z.device) if keep else None
        decoded = decode_latents(model, zs, cfg, rules, generator, batch_size, bars=n_bars, attributes=attrs,
                                 time_sigs=time_sigs)  # fmt: skip
        for i, ids in zip(rows, decoded, strict=True):
            out[i] = ids
    return out  # type: ignore[return-value]


def _rows(t: torch.Tensor | None, rows: list[int], n_bars: int | None) -> torch.Tensor | None:
    """Rows of a (N, ...) tensor, and per bar (n_bars given) their first n_bars bars; None stays None."""
    return None if t is None else t[rows] if n_bars is None else t[rows, :n_bars]


def apply_class_changes(classes: torch.Tensor, names, changes: dict[str, tuple[bool, int]]) -> torch.Tensor:
    """classes (..., A) of the attributes `names`, with {name: (relative, value)} applied, kept in 0..7."""
    out = classes.clone()
    for name, (relative, value) in changes.items():
        col = list(names).index(name)
        out[..., col] = (out[..., col] + value if relative else torch.full_like(out[..., col], value)).clamp(0, N_CLASSES - 1)
    return out


def segment_classes(
    model: MusicVAE, reader: AttributeReader, bins: AttributeBins, segments, k: int | None = None
) -> torch.Tensor | None:
    """Classes of the model's attributes for each latent of token segments (no BOS/EOS), on the model's
    device: (N, K, A) per bar (K: `k` or the most bars), (N, A) per segment; None without attributes."""
    if not model.cfg.attributes:
        return None
    classes = latent_classes(reader, bins, segments, model.cfg.attributes, model.per_bar, k)
    return torch.from_numpy(classes).to(next(model.parameters()).device)


def input_classes(loaded: LoadedCheckpoint, segments: list[list[int]] | None = None, piece: list[int] | None = None):
    """Classes of the model's attributes, from the input's own tokens: per latent of each segment (see
    `segment_classes`), or every bar of a whole piece (N_bars, A) (a bar's held notes come from the bars
    before it); None without attributes."""
    names = loaded.model.cfg.attributes
    if not names:
        return None
    if loaded.attribute_bins is None:
        raise UserError(f"{loaded.path} has model.attributes but no class edges: it was not saved by train()")
    reader = loaded.attribute_bins.reader(loaded.tokenizer)
    if piece is None:
        return segment_classes(loaded.model, reader, loaded.attribute_bins, segments)
    columns = [ATTRIBUTES.index(n) for n in names]
    classes = loaded.attribute_bins.classes(reader.bars(piece))[:, columns]
    return torch.from_numpy(classes).to(next(loaded.model.parameters()).device)


def piece_tokens(loaded: LoadedCheckpoint, path: str) -> list[int]:
    """A MIDI file's whole token stream, as the checkpoint's data settings tokenize it."""
    return midi_to_windows(path, loaded.tokenizer, loaded.data).ids.tolist()


def bar_latents(loaded: LoadedCheckpoint, ids: list[int], batch_size: int, rules: TokenRules):
    """Every bar of a token stream -> its posterior (N_bars, c) mu and logvar (latent=bar): bars are encoded
    on their own, so they are encoded a training segment's worth at a time, in batches."""
    bars = split_bars(ids, rules.bar_ids)
    w = loaded.window_bars
    chunks = [[t for bar in bars[i : i + w] for t in bar] for i in range(0, len(bars), w)]
    mu, logvar = encode_segments(loaded.model, chunks, batch_size, rules.bar_ids)  # (chunks, K, c)
    counts = [min(w, len(bars) - i) for i in range(0, len(bars), w)]
    mu = torch.cat([m[:n] for m, n in zip(mu, counts, strict=True)])
    logvar = torch.cat([v[:n] for v, n in zip(logvar, counts, strict=True)])
    return mu, logvar


@dataclass
class EncodedPiece:
    """A whole MIDI file as the model reads it (`encode_piece`): what `sample.py mode=reconstruct` decodes,
    and what the whole-piece fidelity compares the output with."""

    ids: list[int]  # the piece's tokens; per segment: its whole windows, a lone Bar where one was dropped
    mu: torch.Tensor  # posterior means: (N_bars, c) per bar, (N_windows, c) per segment
    logvar: torch.Tensor  # like mu
    classes: torch.Tensor | None  # a model with attributes: the input's classes, (N_bars | N_windows, A)
    segments: list[list[int]] | None = None  # per segment: each window's tokens
    start_bars: list[int] | None = None  # per segment: the bar (0-based) each window starts at


def encode_piece(loaded: LoadedCheckpoint, path: str | Path, batch_size: int, rules: TokenRules) -> EncodedPiece:
    """Encode a whole MIDI file. Per bar: every bar's latent. Per segment: the model's non-overlapping bar
    windows; windows the data rules drop (no notes) keep their place in time as empty bars, so a piece with a
    silent stretch is not pulled together; bars after the last whole window are left out."""
    model = loaded.model
    if model.per_bar:
        ids = piece_tokens(loaded, str(path))
        mu, logvar = bar_latents(loaded, ids, batch_size, rules)  # (N_bars, c)
        return EncodedPiece(ids, mu, logvar, input_classes(loaded, piece=ids))
    bars = loaded.window_bars
    windows = midi_to_windows(str(path), loaded.tokenizer, loaded.data, hop_bars=bars)
    segments = [w.tolist() for w in windows.segments]
    mu, logvar = encode_segments(model, segments, batch_size, rules.bar_ids)  # (N_windows, c)
    starts = [int(b) for b in windows.start_bars]
    return EncodedPiece(_join_windows(segments, starts, bars, rules), mu, logvar, input_classes(loaded, segments),
                        segments, starts)  # fmt: skip


def _join_windows(windows: list[list[int]], start_bars: list[int], bars: int, rules: TokenRules) -> list[int]:
    """Windows of `bars` bars starting at `start_bars` -> one token list, a lone Bar for each bar between them."""
    ids, next_bar = [], 0
    for start, window in zip(start_bars, windows, strict=True):
        ids += [rules.bar_ids[0]] * (start - next_bar) + window
        next_bar = start + bars
    return ids


def decode_piece(
    loaded: LoadedCheckpoint, piece: EncodedPiece, z: torch.Tensor, cfg: SamplingConfig, rules: TokenRules,
    generator, batch_size: int, attributes: torch.Tensor | None = None, skeleton: bool = True,
) -> list[int]:  # fmt: skip
    """Decode a piece's latents z (shaped like piece.mu) into one token list, bar for bar with the input.
    skeleton (with the grammar mask): output bar k carries the input's bar k time signature, so a 3/4 piece
    comes back in 3/4 with its bar count. attributes: classes like piece.classes (a model with attributes)."""
    keep = skeleton and rules.grammar is not None
    if loaded.model.per_bar:
        time_sigs = torch.tensor([bar_time_sigs(piece.ids, rules)], device=z.device) if keep else None
        return decode_latents(loaded.model, z[None], cfg, rules, generator, batch_size, window_bars=loaded.window_bars,
                              attributes=None if attributes is None else attributes[None], time_sigs=time_sigs)[0]  # fmt: skip
    decoded = reconstruct_segments(loaded.model, piece.segments, z, cfg, rules, generator, batch_size, attributes, keep)
    return _join_windows(decoded, piece.start_bars, loaded.window_bars, rules)


def piece_bar_latents(loaded: LoadedCheckpoint, path: str, batch_size: int, rules: TokenRules):
    """`bar_latents` of a MIDI file."""
    return bar_latents(loaded, piece_tokens(loaded, path), batch_size, rules)


def interpolation_path(mu: torch.Tensor, steps: int, segments: list[list[int]], rules: TokenRules) -> torch.Tensor:
    """Slerp from mu[0] to mu[1], ends included: (steps, c); per bar, bar by bar over the bars both
    `segments` hold: (steps, K, c)."""
    if mu.dim() == 3:
        k = min(count_bars(s, rules) for s in segments)
        rows = [torch.stack([slerp(mu[0, j], mu[1, j], t / (steps - 1)) for j in range(k)]) for t in range(steps)]
        return torch.stack(rows)
    return torch.stack([slerp(mu[0], mu[1], t / (steps - 1)) for t in range(steps)])


@dataclass
class Examples:
    """What `reconstruct_and_sample` decoded."""

    mu: torch.Tensor | None  # the segments' posterior means: (N, c) or (N, K, c); None without segments
    reconstructions: list[list[int]]  # each segment decoded from z = mu, bar for bar
    priors: list[list[int]]  # decoded from z ~ N(0, I), as many bars as the longest segment
    bars: int  # the bars of a prior sample


@torch.no_grad()
def reconstruct_and_sample(
    model: MusicVAE, tokenizer, segments: list[list[int]], n_prior: int, cfg: SamplingConfig, rules: TokenRules,
    generator: torch.Generator, batch_size: int = 8, attribute_bins: AttributeBins | None = None,
) -> Examples:  # fmt: skip
    """Reconstruct token segments (no BOS/EOS) from their posterior means, then decode `n_prior` prior draws.

    A model with attributes reconstructs with each segment's own classes and samples the prior with classes
    drawn uniformly (each holds 1/8 of the data). Everything random comes from `generator`, in this order.
    """
    device = next(model.parameters()).device
    mu, recons = None, []
    if segments:
        mu, _ = encode_segments(model, segments, batch_size, rules.bar_ids)  # (N, c) or (N, K, c)
        k = mu.shape[1] if model.per_bar else None
        attrs = segment_classes(model, attribute_bins.reader(tokenizer), attribute_bins, segments, k) if model.cfg.attributes else None
        recons = reconstruct_segments(model, segments, mu, cfg, rules, generator, batch_size, attrs)
    bars = max((count_bars(s, rules) for s in segments), default=1)
    shape = (n_prior, bars, model.cfg.latent_dim) if model.per_bar else (n_prior, model.cfg.latent_dim)
    z = torch.randn(shape, generator=generator, device=device)
    attrs = None
    if model.cfg.attributes:
        attrs = torch.randint(0, N_CLASSES, (*shape[:-1], len(model.cfg.attributes)), generator=generator, device=device)
    priors = decode_latents(model, z, cfg, rules, generator, batch_size, bars=bars, attributes=attrs) if n_prior else []
    return Examples(mu, recons, priors, bars)
