"""Causal Transformer decoder: predicts a segment token by token from BOS, conditioned on z.

Where z enters is the conditioning's business (see conditioning.py); the decoder only calls its hooks.
Incremental decoding keeps a `DecoderCache`: per layer the self-attention keys/values seen so far (and
the cross-attention memory's keys/values, computed once), plus the prepared z projections (per latent,
never per position: each step selects its positions' bars from them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from musicvae.models.conditioning import (
    CROSS_ATTENTION,
    FEED_FORWARD,
    SELF_ATTENTION,
    Conditioning,
    build_conditioning,
)
from musicvae.models.config import VAEConfig
from musicvae.models.layers import Attention, FeedForward, KVCache, TokenEmbedding, layer_norm


@dataclass
class DecoderCache:
    """State of an incremental decode: per-layer caches, the prepared z, and positions consumed."""

    self_attn: list[KVCache]
    cross_attn: list[KVCache]
    state: object = None  # the conditioning's prepare(z), computed at the first step
    length: int = 0  # positions (prefix included) already in the caches


class DecoderBlock(nn.Module):
    """Pre-norm block: causal self-attention, optional cross-attention to z's memory, FF. Each sub-layer's
    norm input goes through the conditioning's `sublayer_input` hook (plain LN(x) unless z enters there)."""

    def __init__(self, cfg: VAEConfig, cross: bool):
        super().__init__()
        self.ln_attn = layer_norm(cfg)
        self.attn = Attention(cfg)
        self.ln_cross = layer_norm(cfg) if cross else None
        self.cross = Attention(cfg) if cross else None
        self.ln_ff = layer_norm(cfg)
        self.ff = FeedForward(cfg)

    def forward(
        self,
        index: int,
        x: torch.Tensor,
        cond: Conditioning,
        view,
        memory: torch.Tensor | None,
        memory_mask: torch.Tensor | None,
        self_cache: KVCache | None,
        cross_cache: KVCache | None,
    ) -> torch.Tensor:
        x, h = cond.sublayer_input(index, SELF_ATTENTION, x, self.ln_attn, view)  # (B, T, D) each
        x = x + self.attn(h, causal=True, cache=self_cache)
        if self.cross is not None:
            x, h = cond.sublayer_input(index, CROSS_ATTENTION, x, self.ln_cross, view)
            x = x + self.cross(h, memory=memory, key_mask=memory_mask, cache=cross_cache)
        x, h = cond.sublayer_input(index, FEED_FORWARD, x, self.ln_ff, view)
        return x + self.ff(h)


class Decoder(nn.Module):
    """(tokens (B, T), z (B, c) or (B, K, c), bars (B, T)) -> next-token logits (B, T, V).

    logits[:, t] predicts tokens[:, t+1]. With K latents per sequence (one per bar), bars[:, t] is the
    bar of position t (BOS: bar 0), so bar k's z conditions the prediction of every token after a
    position of bar k, including the Bar token that opens bar k + 1.
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cond = build_conditioning(cfg)
        self.embed = TokenEmbedding(cfg, cfg.max_len + self.cond.max_prefix)  # the prefix takes positions too
        self.blocks = nn.ModuleList(DecoderBlock(cfg, cross=self.cond.uses_memory) for _ in range(cfg.decoder_layers))
        self.ln_out = layer_norm(cfg)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.embed.tok.weight  # weight tying (as GPT-2 / nanoGPT)

    def new_cache(self, max_positions: int | None = None) -> DecoderCache:
        """An empty cache whose self-attention buffers hold `max_positions` (default: the model's most),
        prefix included; cross-attention keeps only the memory's keys/values."""
        n, capacity = len(self.blocks), max_positions or self.embed.max_len
        return DecoderCache([KVCache(capacity) for _ in range(n)], [KVCache() for _ in range(n)])

    def forward(
        self, tokens: torch.Tensor, z: torch.Tensor, cache: DecoderCache | None = None, bars: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Teacher-forced over all of `tokens`; with a `cache`, `tokens` (and `bars`) are only the new positions."""
        first = cache is None or cache.length == 0
        if first:
            state = self.cond.prepare(z if z.dim() == 3 else z[:, None])  # (B, K, c): K latents per sequence
        else:
            state = cache.state
        view = self.cond.select(state, bars)
        start = 0 if cache is None else cache.length
        prefix = self.cond.prefix(state) if first else None  # (B, P, D) or None
        n_prefix = 0 if prefix is None else prefix.shape[1]
        x = self.cond.input_embeddings(self.embed(tokens, start=start + n_prefix), view)  # (B, T, D)
        if n_prefix:
            x = torch.cat([prefix + self.embed.position(start, n_prefix, x.device), x], dim=1)  # (B, P + T, D)
        memory, memory_mask = self.cond.memory(state, view)
        for i, block in enumerate(self.blocks):
            self_cache = cache.self_attn[i] if cache is not None else None
            cross_cache = cache.cross_attn[i] if cache is not None else None
            x = block(i, x, self.cond, view, memory, memory_mask, self_cache, cross_cache)
        if cache is not None:
            cache.state = state
            cache.length += x.shape[1]
        return self.head(self.ln_out(x[:, n_prefix:]))  # (B, T, V): the prefix predicts nothing
