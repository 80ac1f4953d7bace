"""Bidirectional Transformer encoder: a token segment -> the posterior q(z|x) = N(mu, diag(exp(logvar))).

Two granularities (`latent`):
  segment: one z for the whole segment; attention over all its tokens, one pooled vector.
  bar: one z per bar (MuseMorphose). Each bar is encoded on its own: attention is restricted to the bar's
    tokens (a block-diagonal mask, all bars in one batched pass) and positions restart at every bar, so
    bar k's z is a function of bar k alone, wherever it stands. That is what makes bar latents
    recombinable (swap bars 5-8 for another piece's and decode); attention over the whole segment would
    let every bar's z carry its neighbours. BOS and EOS belong to no bar here.
"""

from __future__ import annotations

import torch
from torch import nn

from musicvae.models.config import LATENTS, POOLINGS, VAEConfig
from musicvae.models.layers import Attention, FeedForward, TokenEmbedding, layer_norm

# LATENTS, POOLINGS: the encoder's options, defined and checked with the config, importable here as before
__all__ = ["LATENTS", "POOLINGS", "Encoder", "at_positions", "bar_body"]


class EncoderBlock(nn.Module):
    """Pre-norm block with non-causal self-attention over the non-pad tokens."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.ln_attn = layer_norm(cfg)
        self.attn = Attention(cfg)
        self.ln_ff = layer_norm(cfg)
        self.ff = FeedForward(cfg)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, queries: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D), key_mask (B, T) or (B, T, T) -> (B, T, D); with `queries` (B, Q) positions, only theirs
        (B, Q, D): every position is still a key and value, but no other position's output is computed."""
        h = self.ln_attn(x)
        if queries is None:
            x = x + self.attn(h, key_mask=key_mask)
        else:
            x, q = at_positions(x, queries), at_positions(h, queries)  # (B, Q, D)
            if key_mask.dim() == 3:  # per query: keep the chosen queries' rows, (B, Q, T)
                key_mask = at_positions(key_mask, queries)
            x = x + self.attn(q, memory=h, key_mask=key_mask)  # self-attention: keys from the same h
        return x + self.ff(self.ln_ff(x))


class Encoder(nn.Module):
    """(tokens (B, T), mask (B, T)[, bars (B, T)]) -> (mu, logvar): (B, c) each, or (B, K, c) per bar.

    Pooling, per segment: `summary` prepends a learned token whose output summarizes the segment (as
    BERT's [CLS]); `mean` averages the outputs over the non-pad tokens. Per bar: `summary` takes the
    output at the bar's Bar token (its first, as MuseMorphose); `mean` averages over the bar's tokens.
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.pooling, self.latent = cfg.pooling, cfg.latent
        self.embed = TokenEmbedding(cfg, cfg.max_len + 1)  # +1: summary token
        # Only when it is used: an unused parameter makes DDP fail (find_unused_parameters is slower).
        use_summary = cfg.pooling == "summary" and cfg.latent == "segment"
        self.summary = nn.Parameter(torch.zeros(1, 1, cfg.d_model)) if use_summary else None
        self.blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.encoder_layers))
        self.ln_out = layer_norm(cfg)
        self.to_posterior = nn.Linear(cfg.d_model, 2 * cfg.latent_dim)

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor, bars: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = mask.bool()  # a float mask would be *added* to attention scores by SDPA, not mask them
        if self.latent == "bar":
            if bars is None:
                raise ValueError("model.latent=bar: the encoder needs the bar index of every token (bars)")
            return self._posterior(self._encode_bars(tokens, mask, bars))
        if self.pooling == "summary":
            b = tokens.shape[0]
            x = self.embed(tokens, start=1)  # (B, T, D): positions 1..T, 0 is the summary's
            summary = self.summary + self.embed.position(0, 1, x.device)  # (1, 1, D)
            x = torch.cat([summary.expand(b, -1, -1), x], dim=1)  # (B, 1 + T, D)
            mask = torch.cat([mask.new_ones(b, 1), mask], dim=1)  # (B, 1 + T)
            at_summary = mask.new_zeros(b, 1, dtype=torch.long)  # (B, 1): position 0
            return self._posterior(self.ln_out(self._run_blocks(x, mask, at_summary))[:, 0])
        x = self.ln_out(self._run_blocks(self.embed(tokens), mask))  # (B, T, D)
        m = mask.unsqueeze(-1).to(x.dtype)
        return self._posterior((x * m).sum(1) / m.sum(1).clamp(min=1.0))  # mean over the tokens: (B, D)

    def _run_blocks(self, x: torch.Tensor, key_mask: torch.Tensor, pooled_at: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D) through every block -> (B, T, D); with `pooled_at` (B, Q), the positions pooling reads
        (summary pooling), the last block computes only those (B, Q, D). Nothing reads the other positions'
        last-layer outputs, so computing them is waste: ~5/6 of a layer's matmuls (x-transformers pays it)."""
        if not len(self.blocks):
            return x if pooled_at is None else at_positions(x, pooled_at)
        for block in self.blocks[:-1]:
            x = block(x, key_mask)
        return self.blocks[-1](x, key_mask, queries=pooled_at)

    def _encode_bars(self, tokens: torch.Tensor, mask: torch.Tensor, bars: torch.Tensor) -> torch.Tensor:
        """Each bar on its own -> pooled (B, K, D); a bar absent from a row (a shorter segment) pools zeros."""
        b, t = tokens.shape
        body = bar_body(mask)  # (B, T): the segment's tokens, BOS and EOS excluded
        k = int(bars[body].max()) + 1 if body.any() else 1
        index = torch.arange(t, device=tokens.device)
        starts = body & ((bars != bars.roll(1, dims=1)) | (index == 1))  # (B, T): each bar's first token
        first = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
        pos = torch.where(body, index - first, torch.zeros_like(index))  # restart per bar; BOS/EOS/PAD: 0 (unread)
        x = self.embed.dropout(self.embed.tok(tokens) + self.embed.pos(pos))
        # (B, T, T): a token attends to the tokens of its own bar; BOS/EOS/PAD only to themselves (never empty)
        same_bar = (bars[:, :, None] == bars[:, None, :]) & body[:, None, :] & body[:, :, None]
        attend = same_bar | torch.eye(t, dtype=torch.bool, device=tokens.device)
        if self.pooling == "summary":  # bar k's output at its first token (its Bar token), or zeros if absent
            # (B, K, T): where bar k starts; argmax gives the first True (no scatter: deterministic on every device)
            opens = starts[:, None, :] & (bars[:, None, :] == torch.arange(k, device=x.device)[None, :, None])
            pooled = self.ln_out(self._run_blocks(x, attend, opens.to(torch.uint8).argmax(-1)))  # (B, K, D)
            return pooled * opens.any(-1, keepdim=True).to(pooled.dtype)
        x = self.ln_out(self._run_blocks(x, attend))
        slots = (torch.arange(b, device=x.device)[:, None].expand(b, t), torch.where(body, bars, k))  # others: slot k
        pooled = x.new_zeros(b, k + 1, x.shape[-1]).index_put_(slots, x, accumulate=True)  # (B, K + 1, D)
        count = x.new_zeros(b, k + 1).index_put_(slots, body.to(x.dtype), accumulate=True)
        return pooled[:, :k] / count[:, :k, None].clamp(min=1.0)  # (B, K, D): slot k (BOS, EOS, PAD) dropped

    def _posterior(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pooled (..., D) -> mu, logvar (..., c)."""
        # The posterior head in fp32 even under bf16 autocast: exp(logvar) and the KL amplify rounding
        # (bf16 keeps 8 bits of mantissa; a logvar of -6 rounds by ~0.03, its sigma by ~1.5%).
        with torch.autocast(pooled.device.type, enabled=False):
            mu, logvar = self.to_posterior(pooled.to(self.to_posterior.weight.dtype)).chunk(2, dim=-1)  # (..., c), fp32
        return mu, logvar


def at_positions(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x (B, T, D), positions (B, Q) -> (B, Q, D): each row's vectors at its positions."""
    return x.gather(1, positions[..., None].expand(-1, -1, x.shape[-1]))


def bar_body(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) mask of BOS + segment + EOS + PAD rows -> (B, T) True on the segment's own tokens only."""
    mask = mask.bool()
    body = mask.clone()
    body[:, 0] = False  # BOS
    body[:, :-1] &= mask[:, 1:]  # the last True of each row is its EOS
    body[:, -1] = False
    return body
