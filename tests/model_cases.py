"""Shared by the model tests: every conditioning variant and one tiny-VAE builder.

Importable from any test file (`pythonpath = ["tests"]` in pyproject.toml).
"""

from __future__ import annotations

import torch

from musicvae.models.vae import MusicVAE, VAEConfig

VOCAB, MAX_LEN, D, C = 40, 12, 32, 8

# Every mode, every in-attention position, and the per-layer / bias options.
CONDITIONINGS = [
    {"mode": "none"},
    {"mode": "embedding"},
    {"mode": "prefix"},
    {"mode": "in_attention", "position": "post_norm"},
    {"mode": "in_attention", "position": "pre_norm_attn"},
    {"mode": "in_attention", "position": "every_sublayer"},
    {"mode": "in_attention", "position": "residual"},
    {"mode": "in_attention", "position": "post_norm", "per_layer": True},
    {"mode": "in_attention", "position": "pre_norm_attn", "per_layer": True, "bias": True},
    {"mode": "in_attention", "position": "every_sublayer", "per_layer": True},
    {"mode": "cross_attention", "n_memory": 3},
]
WITH_Z = [c for c in CONDITIONINGS if c["mode"] != "none"]
# Per bar (model.latent=bar): the same, plus cross-attention to every bar's memory.
BAR_CONDITIONINGS = CONDITIONINGS + [{"mode": "cross_attention", "n_memory": 2, "bar_view": "all"}]
BAR_ID = 4  # the tiny vocabulary's "Bar" token in per-bar tests


def case_id(cond: dict) -> str:
    return "-".join(str(v) for v in cond.values())


def tiny_vae(
    conditioning: dict,
    pooling: str = "summary",
    latent_dim: int = C,
    encoder_layers: int = 1,
    decoder_layers: int = 2,
    dropout: float = 0.0,
    latent: str = "segment",
) -> MusicVAE:
    """A seeded tiny VAE in eval mode (callers switch to train() where they need dropout or sampling)."""
    torch.manual_seed(0)
    cfg = VAEConfig(
        vocab_size=VOCAB, max_len=MAX_LEN, d_model=D, heads=4, encoder_layers=encoder_layers,
        decoder_layers=decoder_layers, latent_dim=latent_dim, ff_mult=2, dropout=dropout, pooling=pooling,
        conditioning=dict(conditioning), latent=latent, max_bars=6,
    )  # fmt: skip
    return MusicVAE(cfg).eval()
