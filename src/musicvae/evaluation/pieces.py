"""Whole-piece fidelity: test pieces reconstructed the way `sample.py mode=reconstruct` makes them.

A user's first test of a VAE is to reconstruct a piece they know, whole; the 2-bar test segments of
`fidelity.json`'s `chroma_sim` are not what they hear. Here each test piece is encoded whole
(`encode_piece`: one latent per bar, or per window) and decoded whole (`decode_piece`, the input's
skeleton kept unless `skeleton=false`), at the decoding settings given, and compared bar by bar with the
piece as the model reads it (its tokens written back to MIDI, so both sides share miditok's bar lines):

- `chroma`, `groove`: mean per-bar cosine of duration-weighted pitch classes and of onset grids
  (`musicvae.metrics.music`, MuseMorphose / FIGARO), bars aligned by index;
- `metre`: the share of input bars whose output bar carries the same TimeSig;
- `bars_out` / `bars`: the output's bar count against the input's;
- `note_ratio`: the output's notes over the input's. Per-bar chroma does not see texture: a monophonic
  folk tune that comes back harmonised in four voices by a chorale model keeps its pitch classes per bar
  (chroma near 0.8) with about twice its notes; this says so.

Beside the model's own z, the floor of the same decoder at the same settings: each piece decoded from
another piece's latents (`shuffled`: piece i gets piece i+1's, cycled to its length) with its own
skeleton, so what the score owes to z, and not to the metre, the grammar or the style, is the difference.
The other floor, a decoder without z (`model/conditioning=none`), is a run of its own: the study's report
puts its scores beside. Means carry 95% Student-t intervals over pieces, and the paired difference
own - shuffled is given per measure.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from musicvae.config import register_schema
from musicvae.errors import UserError
from musicvae.generation.decode import RECONSTRUCTION, SamplingConfig, bar_time_sigs
from musicvae.generation.inference import (
    EncodedPiece,
    LoadedCheckpoint,
    decode_piece,
    encode_piece,
    token_rules,
)
from musicvae.generation.render import tokens_to_pretty_midi
from musicvae.metrics.intervals import paired_difference, t_interval
from musicvae.metrics.music import chroma_similarity, groove_similarity

log = logging.getLogger(__name__)

MEASURES = ("chroma", "groove", "metre")  # per piece, for the model's z and for the shuffled floor


@dataclass
class PieceFidelityConfig:
    """How the whole-piece fidelity decodes (eval.pieces in a training config; evaluate.py's `pieces`)."""

    CONFIG_EXCLUDE = ("seed",)  # the run's seed, not a key of eval.pieces

    n_pieces: int = 8  # test pieces reconstructed whole, spread over the split (0: none)
    # decoding: sample.py's reconstruct defaults (RECONSTRUCTION), so the score is what a user hears
    temperature: float = RECONSTRUCTION.temperature
    top_k: int = RECONSTRUCTION.top_k
    top_p: float = RECONSTRUCTION.top_p
    skeleton: bool = True  # each output bar keeps the input bar's time signature (as sample.py does)
    shuffled: bool = True  # the floor: each piece also decoded from another piece's latents
    batch_size: int = 8
    seed: int = 0

    def sampling(self, max_tokens: int) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_k, self.top_p, max_tokens)


def piece_scores(tokenizer, rules, reference: list[int], output: list[int]) -> dict[str, float]:
    """Bar-by-bar fidelity of `output` to `reference` (token ids of whole pieces): chroma, groove, metre share,
    both bar counts and the ratio of their notes. metre is NaN without TimeSig tokens."""
    a, b = tokens_to_pretty_midi(tokenizer, reference)[0], tokens_to_pretty_midi(tokenizer, output)[0]
    ref_ts, out_ts = bar_time_sigs(reference, rules), bar_time_sigs(output, rules)
    same = [i < len(out_ts) and out_ts[i] == t for i, t in enumerate(ref_ts)]
    metre = float(np.mean(same)) if ref_ts and all(t >= 0 for t in ref_ts) else float("nan")
    notes_in, notes_out = (sum(len(inst.notes) for inst in pm.instruments) for pm in (a, b))
    return {"chroma": chroma_similarity(a, b), "groove": groove_similarity(a, b), "metre": metre,
            "bars": len(ref_ts), "bars_out": len(out_ts),
            "note_ratio": notes_out / notes_in if notes_in else float("nan")}  # fmt: skip


def _other_latents(mu: torch.Tensor, n: int) -> torch.Tensor:
    """Another piece's latents (N', c) cycled or cut to n rows: (n, c)."""
    return mu[torch.arange(n, device=mu.device) % mu.shape[0]]


@torch.no_grad()
def evaluate_pieces(loaded: LoadedCheckpoint, paths: list[Path], cfg: PieceFidelityConfig) -> dict:
    """Reconstruct each MIDI file of `paths` whole (and from a shuffled piece's latents) -> per-piece scores
    and their means with intervals. A file that cannot be read is skipped and counted (`skipped`)."""
    model, tok = loaded.model, loaded.tokenizer
    model.eval()
    try:
        rules = token_rules(tok)
    except UserError as e:  # a tokenizer the grammar mask does not model: no skeleton, no metre share
        log.warning("whole-piece fidelity decodes without the grammar mask: %s", e)
        rules = token_rules(tok, grammar=False)
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    sampling = cfg.sampling(model.cfg.max_len - 1)
    encoded: list[tuple[str, EncodedPiece]] = []
    skipped: list[str] = []
    for path in paths:
        try:
            piece = encode_piece(loaded, path, cfg.batch_size, rules)
        except UserError as e:  # a file the data rules reject (too short, no notes): counted, not fatal
            log.warning("whole-piece fidelity skips %s: %s", path, e)
            skipped.append(Path(path).name)
            continue
        encoded.append((Path(path).name, piece))
    rows = []
    for i, (name, piece) in enumerate(encoded):

        def decode(z: torch.Tensor, piece: EncodedPiece = piece) -> list[int]:
            return decode_piece(loaded, piece, z, sampling, rules, gen, cfg.batch_size, piece.classes, cfg.skeleton)

        row = {"piece": name, **piece_scores(tok, rules, piece.ids, decode(piece.mu))}
        if cfg.shuffled and len(encoded) > 1:
            other = encoded[(i + 1) % len(encoded)][1]
            floor = piece_scores(tok, rules, piece.ids, decode(_other_latents(other.mu, piece.mu.shape[0])))
            row |= {f"shuffled_{k}": floor[k] for k in MEASURES}
        rows.append(row)
    return {"settings": asdict(cfg), "summary": summarize(rows), "pieces": rows, "skipped": skipped}


def held_out_pieces(dm, n: int, split: str | None = None) -> list[Path]:
    """n MIDI files of a split (None: test, or val when test is empty), spread evenly over it (every k-th, in
    the cache's order): the same files for every run of the same data."""
    if not dm.datasets:  # not set up by a training run: the cache may still have to be built
        dm.prepare_data()
    names = dm.pieces(split) if split else dm.pieces("test") or dm.pieces("val")
    if not names:
        raise UserError(f"the {split or 'test'} split of {dm.settings.name} holds no pieces")
    step = max(1, len(names) // max(n, 1))
    return [Path(dm.settings.path) / name for name in names[::step][:n]]


def summarize(rows: list[dict]) -> dict:
    """Per measure: the mean over pieces with its 95% interval, the shuffled floor's, and own - shuffled paired
    piece by piece; and how many pieces kept their bar count."""
    out: dict = {"n_pieces": len(rows)}
    for key in MEASURES:
        own = t_interval([r[key] for r in rows])._asdict()
        out[key] = own
        if rows and f"shuffled_{key}" in rows[0]:
            out[f"shuffled_{key}"] = t_interval([r[f"shuffled_{key}"] for r in rows])._asdict()
            by_piece = {r["piece"]: r[key] for r in rows}, {r["piece"]: r[f"shuffled_{key}"] for r in rows}
            out[f"{key}_over_shuffled"] = paired_difference(*by_piece)._asdict()
    out["note_ratio"] = t_interval([r["note_ratio"] for r in rows])._asdict()
    out["bar_count_kept"] = float(np.mean([r["bars_out"] == r["bars"] for r in rows])) if rows else float("nan")
    return out


def flat_summary(result: dict) -> dict[str, float]:
    """The means fidelity.json keeps at its top level (`piece_chroma`, `piece_chroma_shuffled`, ...), so that a
    study's report reads them like the segment measures."""
    summary = result["summary"]
    flat = {}
    for key in MEASURES:
        flat[f"piece_{key}"] = summary[key]["mean"]
        if f"shuffled_{key}" in summary:
            flat[f"piece_{key}_shuffled"] = summary[f"shuffled_{key}"]["mean"]
    flat["piece_bar_count_kept"] = summary["bar_count_kept"]
    flat["piece_note_ratio"] = summary["note_ratio"]["mean"] if "note_ratio" in summary else float("nan")
    flat["n_pieces"] = summary["n_pieces"]
    return flat


def pieces_table(result: dict) -> str:
    """Markdown: each measure's mean [95%] for z, the shuffled floor, and z - shuffled."""
    s = result["summary"]

    def cell(iv: dict | None) -> str:
        if iv is None:
            return "–"
        bounds = f" [{iv['lo']:.3f}, {iv['hi']:.3f}]" if np.isfinite(iv["lo"]) else ""
        return f"{iv['mean']:.3f}{bounds}"

    lines = ["| measure | own z | shuffled z (floor) | own − shuffled |", "|---|---|---|---|"]
    for key in MEASURES:
        lines.append(f"| {key} | {cell(s[key])} | {cell(s.get(f'shuffled_{key}'))} | {cell(s.get(f'{key}_over_shuffled'))} |")
    settings = result["settings"]
    if "note_ratio" in s:
        lines.append(f"| notes, output / input | {cell(s['note_ratio'])} | – | – |")
    lines.append(f"\n{s['n_pieces']} pieces ({len(result['skipped'])} skipped); bar count kept on "
                 f"{s['bar_count_kept']:.0%}; temperature {settings['temperature']}, top_k {settings['top_k']}, "
                 f"top_p {settings['top_p']}, skeleton {settings['skeleton']}.")  # fmt: skip
    return "\n".join(lines)


register_schema("pieces", PieceFidelityConfig)
