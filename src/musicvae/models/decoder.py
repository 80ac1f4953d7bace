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

from musicvae.models.conditioning import Conditioning
from musicvae.models.layers import Attention, FeedForward, KVCache, TokenEmbedding


@dataclass
class DecoderCache:
    """State of an incremental decode: per-layer caches, the prepared z, and positions consumed."""

    self_attn: list[KVCache]
    cross_attn: list[KVCache]
    state: object = None  # the conditioning's prepare(z), computed at the first step
    length: int = 0  # positions (prefix included) already in the caches


class DecoderBlock(nn.Module):
    """Pre-norm block: [z hook] causal self-attention, optional cross-attention to z's memory, FF."""

    def __init__(self, d_model: int, heads: int, ff_mult: int, dropout: float, attn_dropout: float, cross: bool):
        super().__init__()
        self.ln_attn = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, heads, dropout, attn_dropout)
        self.ln_cross = nn.LayerNorm(d_model) if cross else None
        self.cross = Attention(d_model, heads, dropout, attn_dropout) if cross else None
        self.ln_ff = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, ff_mult, dropout)

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
        x, h = cond.attention_input(index, x, self.ln_attn, view)  # (B, T, D) each
        x = x + self.attn(h, causal=True, cache=self_cache)
        if self.cross is not None:
            x = x + self.cross(self.ln_cross(x), memory=memory, key_mask=memory_mask, cache=cross_cache)
        return x + self.ff(self.ln_ff(x))


class Decoder(nn.Module):
    """(tokens (B, T), z (B, c) or (B, K, c), bars (B, T)) -> next-token logits (B, T, V).

    logits[:, t] predicts tokens[:, t+1]. With K latents per sequence (one per bar), bars[:, t] is the
    bar of position t (BOS: bar 0), so bar k's z conditions the prediction of every token after a
    position of bar k, including the Bar token that opens bar k + 1.
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int,
        heads: int,
        layers: int,
        ff_mult: int,
        dropout: float,
        conditioning: Conditioning,
        attn_dropout: float = 0.0,
    ):
        super().__init__()
        self.cond = conditioning
        self.embed = TokenEmbedding(vocab_size, d_model, max_len + conditioning.max_prefix, dropout)
        self.blocks = nn.ModuleList(
            DecoderBlock(d_model, heads, ff_mult, dropout, attn_dropout, cross=conditioning.uses_memory) for _ in range(layers)
        )
        self.ln_out = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
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
