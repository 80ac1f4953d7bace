"""How the decoder is conditioned on z: one small class per mode, one shared interface.

The decoder touches its conditioning at named points only, so it stays one loop:

    state = cond.prepare(z)                        # once per sequence (reused by the KV cache)
    x = cond.input_embeddings(x, state)            # token embeddings, (B, T, D)
    p = cond.prefix(state)                         # tokens prepended to the input, (B, P, D) or None
    x, h = cond.attention_input(i, x, norm, state) # every layer i: residual stream, self-attention input
    m = cond.memory(state)                         # tokens every layer cross-attends to, or None

A new mode is one subclass registered with `@register("name")` plus one YAML file in
`configs/model/conditioning/` whose `mode:` names it; its other keys are the constructor's options.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from musicvae.errors import UserError

CONDITIONINGS: dict[str, type[Conditioning]] = {}


def register(name: str):
    def add(cls: type[Conditioning]) -> type[Conditioning]:
        CONDITIONINGS[name] = cls
        cls.mode = name
        return cls

    return add


class Conditioning(nn.Module):
    """Base class: every hook leaves the decoder untouched (z does not enter there)."""

    mode = "base"
    n_prefix = 0  # tokens this mode prepends to the decoder input
    uses_memory = False  # whether decoder layers get a cross-attention sub-layer

    def __init__(self, latent_dim: int, d_model: int, n_layers: int):
        super().__init__()
        self.latent_dim, self.d_model, self.n_layers = latent_dim, d_model, n_layers

    def prepare(self, z: torch.Tensor) -> torch.Tensor | None:
        """z (B, c) -> whatever the hooks need, computed once per sequence."""
        return None

    def input_embeddings(self, x: torch.Tensor, state) -> torch.Tensor:
        return x

    def prefix(self, state) -> torch.Tensor | None:
        return None

    def attention_input(self, layer: int, x: torch.Tensor, norm: nn.Module, state):
        """Return (residual stream, input to self-attention) for decoder layer `layer`. x: (B, T, D)."""
        return x, norm(x)

    def memory(self, state) -> torch.Tensor | None:
        return None


@register("none")
class NoConditioning(Conditioning):
    """The decoder ignores z: a plain language model. KL should fall to 0 (the collapse baseline)."""


@register("embedding")
class EmbeddingConditioning(Conditioning):
    """z projected to the model width and added to the input embeddings only: the first layer sees it."""

    def __init__(self, latent_dim: int, d_model: int, n_layers: int):
        super().__init__(latent_dim, d_model, n_layers)
        self.proj = nn.Linear(latent_dim, d_model)

    def prepare(self, z):
        return self.proj(z).unsqueeze(1)  # (B, 1, D): broadcasts over time

    def input_embeddings(self, x, state):
        return x + state


@register("prefix")
class PrefixConditioning(Conditioning):
    """z projected to one token prepended to the decoder input (x-transformers' GPTVAE)."""

    n_prefix = 1

    def __init__(self, latent_dim: int, d_model: int, n_layers: int):
        super().__init__(latent_dim, d_model, n_layers)
        self.proj = nn.Linear(latent_dim, d_model)

    def prepare(self, z):
        return self.proj(z).unsqueeze(1)  # (B, 1, D)

    def prefix(self, state):
        return state


IN_ATTENTION_POSITIONS = ("post_norm", "pre_norm", "residual")


@register("in_attention")
class InAttentionConditioning(Conditioning):
    """z added to the hidden state before every decoder self-attention (MuseMorphose's in-attention).

    `position` says where, in layer i with pre-norm LN and projected z `w = W z` (B, 1, D):
      post_norm (default): attention input = LN(x) + w; the residual stream x never holds z.
      pre_norm  (x-transformers `in_attn_cond`): attention input = LN(x + w); residual stream untouched.
      residual  (MuseMorphose): x <- x + w, then attention input = LN(x); z accumulates in the stream.
    One Linear(c, D) shared by all layers (MuseMorphose), or one per layer with `per_layer`. The add is
    broadcast over time, so the condition size c is independent of D and of the sequence length.
    """

    def __init__(
        self,
        latent_dim: int,
        d_model: int,
        n_layers: int,
        position: str = "post_norm",
        per_layer: bool = False,
        bias: bool = False,
    ):
        super().__init__(latent_dim, d_model, n_layers)
        if position not in IN_ATTENTION_POSITIONS:
            raise UserError(
                f"model.conditioning.position={position!r} is not one of {', '.join(IN_ATTENTION_POSITIONS)}"
            )
        self.position = position
        n_proj = n_layers if per_layer else 1
        self.proj = nn.ModuleList(nn.Linear(latent_dim, d_model, bias=bias) for _ in range(n_proj))

    def prepare(self, z):
        return [p(z).unsqueeze(1) for p in self.proj]  # per projection: (B, 1, D)

    def attention_input(self, layer, x, norm, state):
        w = state[layer if len(state) > 1 else 0]  # (B, 1, D), broadcast over the T positions
        if self.position == "post_norm":
            return x, norm(x) + w
        if self.position == "pre_norm":
            return x, norm(x + w)
        x = x + w  # residual
        return x, norm(x)


@register("cross_attention")
class CrossAttentionConditioning(Conditioning):
    """z -> `n_memory` memory tokens (Linear(c, n_memory * D)); every layer cross-attends to them."""

    uses_memory = True

    def __init__(self, latent_dim: int, d_model: int, n_layers: int, n_memory: int = 4):
        super().__init__(latent_dim, d_model, n_layers)
        if n_memory < 1:
            raise UserError(f"model.conditioning.n_memory={n_memory} must be at least 1")
        self.n_memory = n_memory
        self.proj = nn.Linear(latent_dim, n_memory * d_model)

    def prepare(self, z):
        return self.proj(z).view(z.shape[0], self.n_memory, self.d_model)  # (B, M, D)

    def memory(self, state):
        return state


def build_conditioning(mode: str, latent_dim: int, d_model: int, n_layers: int, **options) -> Conditioning:
    """The conditioning named `mode` with its options (the keys of its YAML besides `mode`)."""
    if mode not in CONDITIONINGS:
        raise UserError(
            f"model.conditioning.mode={mode!r} is unknown; choose one of {', '.join(sorted(CONDITIONINGS))}"
        )
    cls = CONDITIONINGS[mode]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "latent_dim", "d_model", "n_layers")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UserError(
            f"model.conditioning.{unknown[0]} is not an option of mode {mode!r} "
            f"(its options: {', '.join(allowed) or 'none'})"
        )
    return cls(latent_dim, d_model, n_layers, **options)
