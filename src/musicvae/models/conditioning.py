"""How the decoder is conditioned on z: one small class per mode, one shared interface.

z comes as K latents per sequence, (B, K, c): K = 1 for a segment latent, one per bar with
`model.latent=bar`, where bars (B, T) says which bar each decoder position is in and bar k's z
conditions bar k's positions. The decoder touches its conditioning at named points only, so it stays
one loop:

    state = cond.prepare(z)                    # once per sequence (the KV cache keeps it)
    view = cond.select(state, bars)            # for the positions at hand: bars (B, T) or None
    x = cond.input_embeddings(x, view)         # token embeddings, (B, T, D)
    p = cond.prefix(state)                     # tokens prepended to the input, (B, P, D) or None
    x, h = cond.sublayer_input(i, kind, x, norm, view)
                                               # layer i, each sub-layer (kind: self-attention, cross-
                                               # attention, feed-forward) where it would take norm(x):
                                               # the residual stream, the sub-layer's input
    m, m_mask = cond.memory(state, view)       # what every layer cross-attends to, or (None, None)

`select` is where per-bar conditions follow the positions: a cached decode calls it with the new
positions' bars only, so nothing per position is cached, and nothing needs slicing by the cache offset
(x-transformers' cached decoding cuts its input to the new positions but not a per-token condition).

A new mode is one subclass registered with `@register("name")` plus one YAML file in
`configs/model/conditioning/` whose `mode:` names it; its other keys are the constructor's options.
"""

from __future__ import annotations

import inspect
import logging

import torch
from torch import nn

from musicvae.config import register_schema
from musicvae.errors import UserError
from musicvae.models.config import VAEConfig

log = logging.getLogger(__name__)

CONDITIONINGS: dict[str, type[Conditioning]] = {}
# A decoder layer's sub-layers, in order: what `sublayer_input` is told it is called for.
SELF_ATTENTION, CROSS_ATTENTION, FEED_FORWARD = "self_attention", "cross_attention", "feed_forward"


def register(name: str):
    def add(cls: type[Conditioning]) -> type[Conditioning]:
        CONDITIONINGS[name] = cls
        cls.mode = name
        register_schema(f"conditioning/{name}", cls)  # its options' defaults: configs/model/conditioning/<name>.yaml
        return cls

    return add


def at_bars(per_latent: torch.Tensor, bars: torch.Tensor | None) -> torch.Tensor:
    """(B, K, D), a row per latent -> each position's bar's row (B, T, D); (B, 1, D) as it is when K = 1
    (a segment latent broadcasts over time: no gather)."""
    k = per_latent.shape[1]
    if k == 1:
        return per_latent
    if bars is None:
        raise ValueError(f"{k} latents per sequence need the bar index of every position (bars)")
    index = bars.clamp(0, k - 1)[..., None].expand(-1, -1, per_latent.shape[-1])  # (B, T, D)
    return per_latent.gather(1, index)


class Conditioning(nn.Module):
    """Base class: every hook leaves the decoder untouched (z does not enter there)."""

    mode = "base"
    CONFIG_EXCLUDE = ("max_latents",)  # the model sets it (1, or model.max_bars with latent=bar)
    prefix_per_latent = 0  # tokens this mode prepends to the decoder input, per latent
    uses_memory = False  # whether decoder layers get a cross-attention sub-layer

    def __init__(self, latent_dim: int, d_model: int, n_layers: int, max_latents: int = 1):
        super().__init__()
        self.latent_dim, self.d_model, self.n_layers = latent_dim, d_model, n_layers
        self.max_latents = max_latents  # latents per sequence at most: 1, or model.max_bars with latent=bar

    @property
    def max_prefix(self) -> int:
        """Most positions the prefix can take (sizes the decoder's position table and the KV cache)."""
        return self.prefix_per_latent * self.max_latents

    def prepare(self, z: torch.Tensor):
        """z (B, K, c) -> whatever the hooks need, computed once per sequence."""
        return None

    def select(self, state, bars: torch.Tensor | None):
        """The state as the positions at hand see it; bars (B, T): each one's bar (None when K = 1)."""
        return None

    def input_embeddings(self, x: torch.Tensor, view) -> torch.Tensor:
        return x

    def prefix(self, state) -> torch.Tensor | None:
        return None

    def sublayer_input(self, layer: int, kind: str, x: torch.Tensor, norm: nn.Module, view):
        """(residual stream, the sub-layer's input) for sub-layer `kind` of decoder layer `layer`; called
        where the block would take norm(x), so the plain block is this base version. x: (B, T, D)."""
        return x, norm(x)

    def memory(self, state, view) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(memory (B, M, D), key mask (B, T, M) or None) that every layer cross-attends to."""
        return None, None


@register("none")
class NoConditioning(Conditioning):
    """The decoder ignores z: a plain language model. KL should fall to 0 (the collapse baseline)."""


@register("embedding")
class EmbeddingConditioning(Conditioning):
    """z projected to the model width and added to the input embeddings only: the first layer sees it.
    Per bar: bar k's projection is added to the embeddings of bar k's tokens."""

    def __init__(self, latent_dim: int, d_model: int, n_layers: int, max_latents: int = 1):
        super().__init__(latent_dim, d_model, n_layers, max_latents)
        self.proj = nn.Linear(latent_dim, d_model)

    def prepare(self, z):
        return self.proj(z)  # (B, K, D)

    def select(self, state, bars):
        return at_bars(state, bars)  # (B, T or 1, D)

    def input_embeddings(self, x, view):
        return x + view


@register("prefix")
class PrefixConditioning(Conditioning):
    """Each z projected to one token prepended to the decoder input (x-transformers' GPTVAE). Per bar: K
    tokens, bar k's at prefix position k, and every position attends to all of them (as cross-attention's
    `bar_view=all`, through self-attention): the decoder learns which one is its bar's."""

    prefix_per_latent = 1

    def __init__(self, latent_dim: int, d_model: int, n_layers: int, max_latents: int = 1):
        super().__init__(latent_dim, d_model, n_layers, max_latents)
        self.proj = nn.Linear(latent_dim, d_model)

    def prepare(self, z):
        if z.shape[1] > self.max_latents:
            raise ValueError(f"{z.shape[1]} latents exceed the prefix's {self.max_latents} (model.max_bars)")
        return self.proj(z)  # (B, K, D)

    def prefix(self, state):
        return state


IN_ATTENTION_POSITIONS = ("post_norm", "pre_norm_attn", "every_sublayer", "residual")
# Earlier names of a position, kept so that configs and checkpoints that say them load to what they did.
POSITION_ALIASES = {"pre_norm": "pre_norm_attn"}


def resolve_position(position: str) -> str:
    """In-attention's `position` by its name today: an earlier name (POSITION_ALIASES) maps, with a log
    line, to the position it always meant; anything else unknown is a UserError."""
    if position in POSITION_ALIASES:
        new = POSITION_ALIASES[position]
        log.warning(
            "model.conditioning.position=%s is read as %s, its name now (LN(x + Wz) before self-attention only, "
            "as before); x-transformers' in-attention, before every sub-layer's norm, is every_sublayer",
            position, new,
        )  # fmt: skip
        return new
    if position not in IN_ATTENTION_POSITIONS:
        raise UserError(
            f"model.conditioning.position={position!r} is not one of {', '.join(IN_ATTENTION_POSITIONS)}"
        )
    return position


@register("in_attention")
class InAttentionConditioning(Conditioning):
    """z added to the decoder's hidden state in every layer (in-attention, MuseMorphose).

    `position` says where, in layer i with pre-norm LNs and projected z `w = W z` (B, 1, D):
      post_norm (default): self-attention input = LN(x) + w ("after the layer norm, before the
        attention"); the residual stream x never holds z.
      pre_norm_attn: self-attention input = LN(x + w); the stream untouched; the other sub-layers
        without z. (Named `pre_norm` before: that name still loads, as this.)
      every_sublayer (x-transformers' `in_attn_cond`): the input of every sub-layer's norm gets w, so
        self-attention and feed-forward read LN(x + w); the stream untouched.
      residual (MuseMorphose's code): x <- x + w, then self-attention input = LN(x); z accumulates in
        the stream.
    One Linear(c, D) shared by all layers (MuseMorphose), or one per layer with `per_layer`. A segment
    latent is broadcast over time, so the condition size c is independent of D and of the sequence
    length; per bar, w is (B, T, D): each position carries its bar's projection, in every layer.
    """

    def __init__(
        self,
        latent_dim: int,
        d_model: int,
        n_layers: int,
        max_latents: int = 1,
        position: str = "post_norm",
        per_layer: bool = False,
        bias: bool = False,
    ):
        super().__init__(latent_dim, d_model, n_layers, max_latents)
        self.position = resolve_position(position)
        n_proj = n_layers if per_layer else 1
        self.proj = nn.ModuleList(nn.Linear(latent_dim, d_model, bias=bias) for _ in range(n_proj))

    def prepare(self, z):
        return [p(z) for p in self.proj]  # per projection: (B, K, D)

    def select(self, state, bars):
        return [at_bars(w, bars) for w in state]  # per projection: (B, T or 1, D)

    def sublayer_input(self, layer, kind, x, norm, view):
        if kind != SELF_ATTENTION and self.position != "every_sublayer":
            return x, norm(x)
        w = view[layer if len(view) > 1 else 0]  # (B, T or 1, D)
        if self.position == "post_norm":
            return x, norm(x) + w
        if self.position in ("pre_norm_attn", "every_sublayer"):
            return x, norm(x + w)  # the residual stream stays x
        x = x + w  # residual
        return x, norm(x)


BAR_VIEWS = ("own", "all")


@register("cross_attention")
class CrossAttentionConditioning(Conditioning):
    """Each z -> `n_memory` memory tokens (Linear(c, n_memory * D)); every layer cross-attends to them.

    Per bar (K latents, K * n_memory tokens), `bar_view` says which a position sees: `own` (default)
    its own bar's tokens only, as in-attention gives each position its bar's z; `all` every bar's, so a
    position can also look at the bars around it (the phrase it sits in).
    """

    uses_memory = True

    def __init__(
        self, latent_dim: int, d_model: int, n_layers: int, max_latents: int = 1, n_memory: int = 4, bar_view: str = "own"
    ):
        super().__init__(latent_dim, d_model, n_layers, max_latents)
        if n_memory < 1:
            raise UserError(f"model.conditioning.n_memory={n_memory} must be at least 1")
        if bar_view not in BAR_VIEWS:
            raise UserError(f"model.conditioning.bar_view={bar_view!r} is not one of {', '.join(BAR_VIEWS)}")
        self.n_memory, self.bar_view = n_memory, bar_view
        self.proj = nn.Linear(latent_dim, n_memory * d_model)

    def prepare(self, z):
        b, k, _ = z.shape
        return self.proj(z).view(b, k * self.n_memory, self.d_model)  # (B, K*M, D): bar j's at j*M..

    def select(self, state, bars):
        k = state.shape[1] // self.n_memory
        if k == 1 or self.bar_view == "all":
            return None
        if bars is None:
            raise ValueError(f"{k} latents per sequence need the bar index of every position (bars)")
        key_bar = torch.arange(k, device=state.device).repeat_interleave(self.n_memory)  # (K*M,)
        return key_bar[None, None, :] == bars.clamp(0, k - 1)[:, :, None]  # (B, T, K*M): its own bar's

    def memory(self, state, view):
        return state, view


def build_conditioning(cfg: VAEConfig) -> Conditioning:
    """The conditioning `cfg.conditioning` names (`mode`) with its options (the keys of its YAML besides `mode`)."""
    options = dict(cfg.conditioning)
    mode = options.pop("mode")
    if mode not in CONDITIONINGS:
        raise UserError(
            f"model.conditioning.mode={mode!r} is unknown; choose one of {', '.join(sorted(CONDITIONINGS))}"
        )
    cls = CONDITIONINGS[mode]
    fixed = ("self", "latent_dim", "d_model", "n_layers", "max_latents")
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in fixed]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UserError(
            f"model.conditioning.{unknown[0]} is not an option of mode {mode!r} "
            f"(its options: {', '.join(allowed) or 'none'})"
        )
    return cls(  # z joined with its attributes (cfg.cond_dim) comes in; one latent, or one per bar
        latent_dim=cfg.cond_dim, d_model=cfg.d_model, n_layers=cfg.decoder_layers, max_latents=cfg.max_latents,
        **options,
    )  # fmt: skip
