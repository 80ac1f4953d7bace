"""Bidirectional Transformer encoder: a token segment -> the posterior q(z|x) = N(mu, diag(exp(logvar)))."""

from __future__ import annotations

import torch
from torch import nn

from musicvae.models.layers import Attention, FeedForward, TokenEmbedding

POOLINGS = ("summary", "mean")


class EncoderBlock(nn.Module):
    """Pre-norm block with non-causal self-attention over the non-pad tokens."""

    def __init__(self, d_model: int, heads: int, ff_mult: int, dropout: float, attn_dropout: float):
        super().__init__()
        self.ln_attn = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, heads, dropout, attn_dropout)
        self.ln_ff = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, ff_mult, dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x), key_mask=key_mask)
        return x + self.ff(self.ln_ff(x))


class Encoder(nn.Module):
    """(tokens (B, T), mask (B, T)) -> (mu (B, c), logvar (B, c)).

    Pooling: `summary` prepends a learned token whose output summarizes the segment (as BERT's
    [CLS]); `mean` averages the outputs over the non-pad tokens.
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int,
        heads: int,
        layers: int,
        latent_dim: int,
        ff_mult: int,
        dropout: float,
        pooling: str,
        attn_dropout: float = 0.0,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"model.pooling={pooling!r} is not one of {', '.join(POOLINGS)}")
        self.pooling = pooling
        self.embed = TokenEmbedding(vocab_size, d_model, max_len + 1, dropout)  # +1: summary token
        # Only when it is used: an unused parameter makes DDP fail (find_unused_parameters is slower).
        self.summary = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "summary" else None
        self.blocks = nn.ModuleList(EncoderBlock(d_model, heads, ff_mult, dropout, attn_dropout) for _ in range(layers))
        self.ln_out = nn.LayerNorm(d_model)
        self.to_posterior = nn.Linear(d_model, 2 * latent_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = mask.bool()  # a float mask would be *added* to attention scores by SDPA, not mask them
        if self.pooling == "summary":
            b = tokens.shape[0]
            x = self.embed(tokens, start=1)  # (B, T, D): positions 1..T, 0 is the summary's
            summary = self.summary + self.embed.position(0, 1, x.device)  # (1, 1, D)
            x = torch.cat([summary.expand(b, -1, -1), x], dim=1)  # (B, 1 + T, D)
            mask = torch.cat([mask.new_ones(b, 1), mask], dim=1)  # (B, 1 + T)
        else:
            x = self.embed(tokens)  # (B, T, D)
        for block in self.blocks:
            x = block(x, mask)
        x = self.ln_out(x)
        if self.pooling == "summary":
            pooled = x[:, 0]  # (B, D)
        else:
            m = mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, D)
        # The posterior head in fp32 even under bf16 autocast: exp(logvar) and the KL amplify rounding
        # (bf16 keeps 8 bits of mantissa; a logvar of -6 rounds by ~0.03, its sigma by ~1.5%).
        with torch.autocast(x.device.type, enabled=False):
            mu, logvar = self.to_posterior(pooled.to(self.to_posterior.weight.dtype)).chunk(2, dim=-1)  # (B, c) each, fp32
        return mu, logvar
