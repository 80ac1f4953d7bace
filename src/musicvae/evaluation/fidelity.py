"""After training: musical fidelity of reconstructions and statistics of prior samples, plus a few files.

Writes into the run dir:
- `fidelity.json`: chroma and groove similarity between test segments and their reconstructions
  (z = mu, per-bar cosine similarity as MuseMorphose / FIGARO), pitch-class entropy and note density
  of prior samples vs the same test segments;
- `samples/`: the first few prior samples, test segments (`input_*`) and their reconstructions
  (`reconstruct_*`), and an interpolation from the first test segment to the second (`interpolate_*`, z
  slerped between their posterior means), each as MIDI + piano-roll PNG + audio (musicvae.generation.audio): what the
  report's index.html plays.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from musicvae.config import register_schema
from musicvae.errors import UserError
from musicvae.generation.audio import AudioConfig
from musicvae.generation.decode import NonFiniteModel, SamplingConfig, decode_latents
from musicvae.generation.inference import Examples, interpolation_path, reconstruct_and_sample, token_rules
from musicvae.generation.render import tokens_to_pretty_midi, write_sample
from musicvae.metrics.music import chroma_similarity, groove_similarity, note_density, pitch_class_entropy
from musicvae.models.vae import MusicVAE

log = logging.getLogger(__name__)


@dataclass
class FidelityConfig:
    CONFIG_EXCLUDE = ("seed",)  # the run's seed, not a key of eval.fidelity

    n_reconstructions: int = 16  # test segments reconstructed (0, with n_samples 0: skip the whole evaluation)
    n_samples: int = 8  # prior samples
    n_files: int = 2  # of each kind kept in <run dir>/samples/ as MIDI + piano roll + audio
    interpolation_steps: int = 5  # samples/interpolate_*: test segment 0 -> 1, both ends included (0: none)
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
    model: MusicVAE, tokenizer, test_segments: list[list[int]], cfg: FidelityConfig, run_dir: Path, attribute_bins=None,
    audio: AudioConfig | None = None,
) -> dict:  # fmt: skip
    """Reconstruct test segments and sample the prior; write fidelity.json and samples/ (with `audio`, each
    sample's audio beside it). Returns the dict.

    A model that cannot be sampled (non-finite weights after a divergence) is not evaluated: fidelity.json
    says why ({"skipped": reason}) and the run itself is left to succeed or fail on its own terms.
    """
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        return _skipped(run_dir, f"{len(bad)} weight tensors hold NaN or inf (first: {bad[0]})")
    try:
        return _evaluate(model, tokenizer, test_segments, cfg, run_dir, attribute_bins, audio)
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
    model: MusicVAE, tokenizer, test_segments: list[list[int]], cfg: FidelityConfig, run_dir: Path, attribute_bins=None,
    audio: AudioConfig | None = None,
) -> dict:  # fmt: skip
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
    examples = reconstruct_and_sample(model, tokenizer, inputs, cfg.n_samples, sampling, rules, gen, cfg.batch_size,
                                      attribute_bins)  # fmt: skip
    originals = [_midi(tokenizer, seg) for seg in inputs]
    recons = [_midi(tokenizer, ids) for ids in examples.reconstructions]
    priors = [_midi(tokenizer, ids) for ids in examples.priors]

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
    # Drawn after everything fidelity.json holds, so those numbers do not depend on it.
    path = _interpolation(model, inputs, examples, cfg, sampling, rules, gen) if len(recons) >= 2 else []
    for kind, pms in (("prior", priors), ("reconstruct", recons), ("input", originals)):
        for i, pm in enumerate(pms[: cfg.n_files]):
            write_sample(pm, samples_dir / f"{kind}_{i:03d}.mid", f"{kind} {i}", audio)
    for k, ids in enumerate(path):
        title = f"interpolate: input 0 -> input 1, step {k}, α = {k / (len(path) - 1):.2f}"
        write_sample(_midi(tokenizer, ids), samples_dir / f"interpolate_{k:03d}.mid", title, audio)
    log.info("fidelity: %s", json.dumps(result))
    return result


def _interpolation(model: MusicVAE, inputs, examples: Examples, cfg: FidelityConfig, sampling, rules, gen):
    """Token lists along the slerp from the first input's posterior mean to the second's (per bar: over the
    bars both hold); [] when interpolation_steps < 2 or the model takes attribute classes."""
    if cfg.interpolation_steps < 2 or model.cfg.attributes:
        return []
    z = interpolation_path(examples.mu[:2], cfg.interpolation_steps, inputs[:2], rules)  # (S, c) or (S, K, c)
    bars = None if model.per_bar else examples.bars
    return decode_latents(model, z, sampling, rules, gen, cfg.batch_size, bars=bars)


register_schema("fidelity", FidelityConfig)
