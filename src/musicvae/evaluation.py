"""After training: musical fidelity of reconstructions and statistics of prior samples, plus a few files.

Writes into the run dir:
- `fidelity.json`: chroma and groove similarity between test segments and their reconstructions
  (z = mu, per-bar cosine similarity as MuseMorphose / FIGARO), pitch-class entropy and note density
  of prior samples vs the same test segments;
- `samples/`: the first few prior samples and reconstructions as MIDI + piano-roll PNG.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from musicvae.data.attributes import N_CLASSES, AttributeReader
from musicvae.errors import UserError
from musicvae.generate import NonFiniteModel, SamplingConfig, decode_latents
from musicvae.inference import count_bars, encode_segments, reconstruct_segments, segment_classes, token_rules
from musicvae.metrics.music import chroma_similarity, groove_similarity, note_density, pitch_class_entropy
from musicvae.models.vae import MusicVAE
from musicvae.render import piano_roll_png, tokens_to_pretty_midi

log = logging.getLogger(__name__)


@dataclass
class FidelityConfig:
    n_reconstructions: int = 16  # test segments reconstructed (0 = skip the whole evaluation)
    n_samples: int = 8  # prior samples
    n_files: int = 2  # of each kind written to samples/ as MIDI + PNG
    temperature: float = 1.0
    top_p: float = 0.9
    batch_size: int = 8
    seed: int = 0
    grammar: bool = True  # decode under the REMI grammar mask (as scripts/sample.py does by default)


def _midi(tokenizer, ids):
    return tokens_to_pretty_midi(tokenizer, ids)[0]


def _nanmean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def evaluate_fidelity(
    model: MusicVAE, tokenizer, test_segments: list[list[int]], cfg: FidelityConfig, run_dir: Path, attribute_bins=None
) -> dict:
    """Reconstruct test segments and sample the prior; write fidelity.json and samples/. Returns the dict.

    A model that cannot be sampled (non-finite weights after a divergence) is not evaluated: fidelity.json
    says why ({"skipped": reason}) and the run itself is left to succeed or fail on its own terms.
    """
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        return _skipped(run_dir, f"{len(bad)} weight tensors hold NaN or inf (first: {bad[0]})")
    try:
        return _evaluate(model, tokenizer, test_segments, cfg, run_dir, attribute_bins)
    except NonFiniteModel as e:
        return _skipped(run_dir, str(e))


def _skipped(run_dir: Path, reason: str) -> dict:
    log.warning("fidelity evaluation skipped: %s", reason)
    result = {"skipped": reason}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "fidelity.json").write_text(json.dumps(result, indent=2))
    return result


@torch.no_grad()
def _evaluate(
    model: MusicVAE, tokenizer, test_segments: list[list[int]], cfg: FidelityConfig, run_dir: Path, attribute_bins=None
) -> dict:
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    sampling = SamplingConfig(cfg.temperature, 0, cfg.top_p, model.cfg.max_len - 1)
    try:
        rules = token_rules(tokenizer, cfg.grammar)
    except UserError as e:  # a tokenizer the grammar mask does not know: evaluate without it, say so
        log.warning("fidelity evaluation decodes without the grammar mask: %s", e)
        rules = token_rules(tokenizer, grammar=False)
    samples_dir = run_dir / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)

    inputs = test_segments[: cfg.n_reconstructions]
    originals = [_midi(tokenizer, seg) for seg in inputs]
    recons = []
    if inputs:
        mu, _ = encode_segments(model, inputs, cfg.batch_size, rules.bar_ids)  # (N, c) or (N, K, c)
        k = mu.shape[1] if model.per_bar else None  # a model with attributes: each input's own classes
        attrs = segment_classes(model, AttributeReader(tokenizer), attribute_bins, inputs, k) if model.cfg.attributes else None
        decoded = reconstruct_segments(model, inputs, mu, sampling, rules, gen, cfg.batch_size, attrs)
        recons = [_midi(tokenizer, ids) for ids in decoded]
    bars = max((count_bars(s, rules) for s in inputs), default=1)  # prior samples: a segment's bars
    shape = (cfg.n_samples, bars, model.cfg.latent_dim) if model.per_bar else (cfg.n_samples, model.cfg.latent_dim)
    z = torch.randn(shape, generator=gen, device=device)
    attrs = None  # prior samples of a model with attributes: classes drawn uniformly (1/8 of the data each)
    if model.cfg.attributes:
        attrs = torch.randint(0, N_CLASSES, (*shape[:-1], len(model.cfg.attributes)), generator=gen, device=device)
    priors = [_midi(tokenizer, ids) for ids in decode_latents(model, z, sampling, rules, gen, cfg.batch_size, bars=bars,
                                                              attributes=attrs)]  # fmt: skip

    result = {
        "chroma_sim": _nanmean([chroma_similarity(a, b) for a, b in zip(originals, recons, strict=True)]),
        "groove_sim": _nanmean([groove_similarity(a, b) for a, b in zip(originals, recons, strict=True)]),
        "pitch_class_entropy": {
            "samples": _nanmean([pitch_class_entropy(p) for p in priors]),
            "data": _nanmean([pitch_class_entropy(p) for p in originals]),
        },
        "note_density": {
            "samples": _nanmean([note_density(p) for p in priors]),
            "data": _nanmean([note_density(p) for p in originals]),
        },
        "n_reconstructions": len(recons),
        "n_samples": len(priors),
    }
    (run_dir / "fidelity.json").write_text(json.dumps(result, indent=2))
    for kind, pms in (("prior", priors), ("reconstruct", recons), ("input", originals)):
        for i, pm in enumerate(pms[: cfg.n_files]):
            pm.write(str(samples_dir / f"{kind}_{i:03d}.mid"))
            piano_roll_png(pm, samples_dir / f"{kind}_{i:03d}.png", title=f"{kind} {i}")
    log.info("fidelity: %s", json.dumps(result))
    return result
