"""Transformer building blocks shared by the encoder and the decoder.

Pre-norm blocks (LayerNorm before each sub-layer, residual around it) with attention through
`F.scaled_dot_product_attention`, so GPUs get flash / memory-efficient kernels. Self-attention keeps
an optional per-layer KV cache for incremental decoding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from musicvae.models.config import VAEConfig


class KVCache:
    """Keys and values one attention layer has seen so far, in buffers written in place.

    The buffers (B, H, capacity, Dh) are allocated at the first append, sized for the whole decode
    (`capacity`, the decoder's max length), so a step writes its new positions into them and returns
    views of the filled part: no re-allocation and no copy of the history per step (a `torch.cat` per
    step copies all cached keys, O(T^2) memory traffic over a decode). Past capacity they double.
    """

    def __init__(self, capacity: int = 0):
        self.capacity = capacity
        self.k: torch.Tensor | None = None  # (B, H, capacity, Dh)
        self.v: torch.Tensor | None = None
        self.length = 0  # positions filled

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions' keys/values (B, H, T_new, Dh) and return all of them (views)."""
        end = self.length + k.shape[2]
        if self.k is None or end > self.k.shape[2]:
            self._grow(k, max(end, self.capacity, 2 * (0 if self.k is None else self.k.shape[2])))
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def _grow(self, like: torch.Tensor, capacity: int) -> None:
        b, h, _, dh = like.shape
        k, v = like.new_empty(b, h, capacity, dh), like.new_empty(b, h, capacity, dh)
        if self.k is not None:
            k[:, :, : self.length] = self.k[:, :, : self.length]
            v[:, :, : self.length] = self.v[:, :, : self.length]
        self.k, self.v = k, v


class Attention(nn.Module):
    """Multi-head attention. Self-attention when `memory` is None, else cross-attention over it."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        d = cfg.d_model  # cfg checks that heads divides it
        self.heads = cfg.heads
        self.q = nn.Linear(d, d, bias=cfg.bias)
        self.kv = nn.Linear(d, 2 * d, bias=cfg.bias)
        self.out = nn.Linear(d, d, bias=cfg.bias)
        # Dropout on the attention weights is separate from the residual one: with it, CPU's SDPA leaves
        # its fused kernel, and current LMs train without it (nanoGPT, Llama).
        self.attn_dropout = cfg.attn_dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # (B, H, T, Dh)

    def forward(
        self,
        x: torch.Tensor,
        *,
        causal: bool = False,
        key_mask: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """x: (B, T, D) queries; memory: (B, M, D). key_mask: True where a key may be attended, (B, S) for
        every query alike or (B, T, S) per query (an encoder's bar blocks, a decoder position's own bar).

        With a `cache`, x holds only the new positions: their keys/values are appended (self-attention),
        or, for cross-attention, the memory's keys/values are computed once and reused.
        """
        b, t, d = x.shape
        q = self._split(self.q(x))  # (B, H, T, Dh)
        if memory is not None and cache is not None and cache.length:
            k, v = cache.k[:, :, : cache.length], cache.v[:, :, : cache.length]  # the memory's, from step 1
        else:
            k, v = self.kv(x if memory is None else memory).chunk(2, dim=-1)
            k, v = self._split(k), self._split(v)  # (B, H, S, Dh)
            if cache is not None:
                k, v = cache.append(k, v)
        mask = None
        if key_mask is not None:  # (B, 1, 1 or T, S): broadcast over heads (and queries)
            mask = key_mask[:, None, None, :] if key_mask.dim() == 2 else key_mask[:, None]
        # A causal step with a cache (T new queries after S-T cached keys) needs an offset mask;
        # a single new query may attend to every cached key, so no mask at all.
        is_causal = causal and memory is None and t > 1
        if is_causal and k.shape[2] != t:
            offset = k.shape[2] - t
            mask = torch.ones(t, k.shape[2], dtype=torch.bool, device=x.device).tril(offset)
            is_causal = False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0, is_causal=is_causal
        )  # (B, H, T, Dh)
        y = y.transpose(1, 2).reshape(b, t, d)
        return self.resid_dropout(self.out(y))


class FeedForward(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        d, inner = cfg.d_model, cfg.ff_mult * cfg.d_model
        self.net = nn.Sequential(
            nn.Linear(d, inner, bias=cfg.bias),
            nn.GELU(),
            nn.Linear(inner, d, bias=cfg.bias),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TokenEmbedding(nn.Module):
    """Token + learned absolute position embeddings. (B, T) ids -> (B, T, D)."""

    def __init__(self, cfg: VAEConfig, max_len: int):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(max_len, cfg.d_model)  # max_len: the stack's positions (cfg.max_len + its extras)
        self.dropout = nn.Dropout(cfg.dropout)
        self.max_len = max_len

    def forward(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        t = ids.shape[1]
        if start + t > self.max_len:
            raise ValueError(f"sequence of {start + t} positions exceeds the model's max_len={self.max_len}")
        pos = torch.arange(start, start + t, device=ids.device)
        return self.dropout(self.tok(ids) + self.pos(pos))

    def position(self, start: int, t: int, device: torch.device) -> torch.Tensor:
        """Position embeddings alone, (1, T, D): for tokens that are not vocabulary ids (a z prefix)."""
        if start + t > self.max_len:
            raise ValueError(f"sequence of {start + t} positions exceeds the model's max_len={self.max_len}")
        return self.pos(torch.arange(start, start + t, device=device))[None]


def layer_norm(cfg: VAEConfig) -> nn.LayerNorm:
    """A LayerNorm over d_model, with a bias unless `model.bias=false`."""
    return nn.LayerNorm(cfg.d_model, bias=cfg.bias)
