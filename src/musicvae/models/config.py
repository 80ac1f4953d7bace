"""The model's one config object: the encoder, the decoder and the conditioning are each built from it
(as nanoGPT's GPTConfig), and every option is checked here, once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from musicvae.config import register_schema
from musicvae.errors import UserError

POOLINGS = ("summary", "mean")
LATENTS = ("segment", "bar")

# `model:` settings that say how to run the model, not what it computes: a checkpoint resumes and
# loads whatever they are.
RUN_OPTIONS = ("compile",)


@dataclass
class VAEConfig:
    """Everything needed to rebuild the model (a checkpoint stores it as a dict)."""

    CONFIG_EXCLUDE = ("conditioning",)  # the model/conditioning group's node (schema/conditioning/<mode>)

    vocab_size: int
    max_len: int  # longest token sequence, BOS and EOS included
    d_model: int = 256
    heads: int = 4
    encoder_layers: int = 4
    decoder_layers: int = 4
    latent_dim: int = 64  # c: independent of d_model
    ff_mult: int = 4
    dropout: float = 0.1  # residual and embedding dropout
    attn_dropout: float = 0.0  # on the attention weights (0: SDPA's fused kernels; see layers.Attention)
    # Decoder input token dropout (Bowman et al. 2016, "word dropout"): in training, this share of the
    # decoder's input tokens (BOS and padding kept) becomes MASK, so the prefix alone predicts less and
    # the decoder has to read z. Never applied in eval or sampling.
    token_dropout: float = 0.0
    # GPT-2's init of the projections that write into the residual stream (attention out, FF out):
    # std 0.02 / sqrt(2 * layers), so the stream's variance does not grow with depth.
    scaled_residual_init: bool = True
    # Biases in the Transformer layers: attention and feed-forward Linears and every LayerNorm, both
    # stacks. false drops them all, as x-transformers' attention and norms have none (its FF with ff_no_bias).
    bias: bool = True
    pooling: str = "summary"  # summary (a learned [CLS]-like token; per bar: its Bar token) | mean (over non-pad tokens)
    latent: str = "segment"  # segment: one z per segment | bar: one z per bar (MuseMorphose)
    # Attribute-conditioned decoding (MuseMorphose): a learned embedding per class of each named attribute,
    # joined to z (per bar with latent=bar) before the conditioning, so sampling can ask for other classes.
    attributes: list = field(default_factory=list)  # names, e.g. [rhythm, polyphony] (musicvae.tokens.attributes)
    attribute_dim: int = 64  # embedding size per attribute (MuseMorphose: 64)
    attribute_classes: int = 8
    max_bars: int = 16  # latent=bar: most bars per sequence a prefix conditioning takes (sizes its positions)
    conditioning: dict = field(default_factory=lambda: {"mode": "in_attention"})  # mode + its options

    @staticmethod
    def shape_config(values: dict) -> dict:
        """The defaults as the `model` node has them: `layers` sets both stacks, encoder_layers / decoder_layers
        follow it unless set on their own."""
        if values["encoder_layers"] != values["decoder_layers"]:
            raise ValueError("model.layers sets both stacks: their defaults must agree")
        values["layers"] = values["encoder_layers"]
        values["encoder_layers"] = values["decoder_layers"] = "${.layers}"
        return values

    def __post_init__(self):
        for key in ("d_model", "heads", "encoder_layers", "decoder_layers", "latent_dim", "max_len"):
            if getattr(self, key) < 1:
                raise UserError(f"model.{key}={getattr(self, key)} must be at least 1")
        for key in ("dropout", "attn_dropout", "token_dropout"):
            if not 0 <= getattr(self, key) < 1:
                raise UserError(f"model.{key}={getattr(self, key)} must be in [0, 1)")
        if self.d_model % self.heads:
            raise UserError(f"model.d_model={self.d_model} must be divisible by model.heads={self.heads}")
        if self.pooling not in POOLINGS:
            raise UserError(f"model.pooling={self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if self.latent not in LATENTS:
            raise UserError(f"model.latent={self.latent!r} is not one of {', '.join(LATENTS)}")
        if self.max_bars < 1:
            raise UserError(f"model.max_bars={self.max_bars} must be at least 1")
        if len(set(self.attributes)) != len(self.attributes):
            raise UserError(f"model.attributes={list(self.attributes)} names an attribute twice")

    @property
    def cond_dim(self) -> int:
        """What the conditioning receives per latent: z (c) joined with each attribute's embedding."""
        return self.latent_dim + len(self.attributes) * self.attribute_dim

    @property
    def max_latents(self) -> int:
        """Latents per sequence at most: one per segment, or one per bar up to max_bars."""
        return self.max_bars if self.latent == "bar" else 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict) -> VAEConfig:
        """The config of a `model:` settings dict (configs/model), without the run options (`RUN_OPTIONS`)."""
        return cls(**{k: v for k, v in settings.items() if k not in RUN_OPTIONS})


register_schema("model", VAEConfig)
