"""The VAE: encoder -> reparameterized z -> conditioned decoder. A plain nn.Module (no Lightning, no Hydra)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from musicvae.models.config import VAEConfig
from musicvae.models.decoder import Decoder, DecoderCache
from musicvae.models.encoder import Encoder, bar_body

# The decoder's stand-in for a dropped input token: miditok's MASK with special_tokens [PAD, BOS, EOS, MASK]
# (training checks the tokenizer agrees before it uses token_dropout).
MASK_ID = 3


@dataclass
class VAEOutput:
    logits: torch.Tensor  # (B, T-1, V): predictions of tokens[:, 1:]
    mu: torch.Tensor  # (B, c), or (B, K, c) per bar
    logvar: torch.Tensor  # (B, c), or (B, K, c)
    z: torch.Tensor  # (B, c), or (B, K, c)
    latent_mask: torch.Tensor | None = None  # (B, K) True where row b has bar k (per bar only)


class MusicVAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.attribute_embed = nn.ModuleList(nn.Embedding(cfg.attribute_classes, cfg.attribute_dim) for _ in cfg.attributes)
        self.decoder = Decoder(cfg)  # and its conditioning, from cfg.conditioning
        self.apply(_init_weights)
        if cfg.scaled_residual_init:
            for stack, n_layers in ((self.encoder, cfg.encoder_layers), (self.decoder, cfg.decoder_layers)):
                for name, p in stack.blocks.named_parameters():
                    if name.endswith(("out.weight", "net.2.weight")):  # attention / cross-attention out, FF out
                        nn.init.normal_(p, std=0.02 / math.sqrt(2 * n_layers))
        # z's projections keep PyTorch's default init (std ~ 1/sqrt(3c) per weight): at GPT-2's 0.02 the
        # projected z starts ~30x smaller than the normed hidden state, and every mode would start
        # close to ignoring z. All modes get the same rule, so the comparison stays fair.
        for m in self.conditioning.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        # Likewise the posterior head: at std 0.02, mu barely varies across segments while z's noise has
        # std 1, so the decoder first learns that z is noise and the encoder lags behind (He et al. 2019).
        self.encoder.to_posterior.reset_parameters()
        for embedding in self.attribute_embed:  # N(0, 1) as z itself (MuseMorphose's nn.Embedding default)
            embedding.reset_parameters()

    def compile_parts(self, frozen: bool = False) -> None:
        """torch.compile the encoder and the decoder in place (nn.Module.compile: parameter names and
        checkpoints unchanged), so that every caller of encode/decode runs compiled, sampling included.
        The decoder with dynamic shapes: a cached decode grows by one position a step.

        frozen: for a model whose weights no longer change (sampling): inductor's freezing treats the
        weights of no-grad graphs as constants, which lets it prepack them for the CPU's matmul library
        (compiled and frozen: ~1.2x eager CPU sampling at d_model 256, docs/results/speed). Never for a
        model still training: its no-grad graphs (validation) would keep reading the weights of compile time.
        """
        options = {"freezing": True} if frozen else None  # per compile: nothing leaks into other compiles
        self.encoder.compile(options=options)
        self.decoder.compile(dynamic=True, options=options)

    @property
    def conditioning(self):
        return self.decoder.cond

    @property
    def per_bar(self) -> bool:
        return self.cfg.latent == "bar"

    def encode(
        self, tokens: torch.Tensor, mask: torch.Tensor, bars: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens, mask (B, T) -> mu, logvar (B, c); per bar (bars (B, T) needed): (B, K, c), K the most
        bars of a row, a row's missing bars set to the prior (mu = logvar = 0: no KL, z ~ N(0, I)).
        fp32 even under autocast (see Encoder)."""
        return self.posterior(tokens, mask, bars)[:2]

    def posterior(
        self, tokens: torch.Tensor, mask: torch.Tensor, bars: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`encode`, plus which latents exist: (mu, logvar, latent_mask (B, K) per bar or None)."""
        mu, logvar = self.encoder(tokens, mask, bars)
        if not self.per_bar:
            return mu, logvar, None
        present = latent_mask(bars, mask, mu.shape[1])  # (B, K)
        return mu * present[..., None], logvar * present[..., None], present

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """z = mu + eps * sigma (fp32), eps ~ N(0, I) unless given (for seeded draws)."""
        mu, logvar = mu.float(), logvar.float()
        eps = torch.randn_like(mu) if eps is None else eps.float()
        return mu + eps * torch.exp(0.5 * logvar)

    def decode(
        self, tokens: torch.Tensor, z: torch.Tensor, cache: DecoderCache | None = None, bars: torch.Tensor | None = None,
        attributes: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """tokens (B, T), z (B, c) or (B, K, c), bars (B, T) with K > 1 -> logits (B, T, V).

        attributes: classes (B, A) or (B, K, A), A = len(cfg.attributes), when the model has attributes.
        """
        if cache is None or cache.length == 0:  # later steps reuse the cache's prepared condition
            z = self.join_attributes(z, attributes)
        return self.decoder(tokens, z, cache, bars)

    def join_attributes(self, z: torch.Tensor, attributes: torch.Tensor | None) -> torch.Tensor:
        """z (B, [K,] c) and attribute classes (B, [K,] A) -> (B, [K,] c + A * attribute_dim)."""
        if not self.cfg.attributes:
            return z
        if attributes is None or attributes.shape[-1] != len(self.cfg.attributes) or attributes.shape[:-1] != z.shape[:-1]:
            got = None if attributes is None else tuple(attributes.shape)
            raise ValueError(
                f"a model with attributes {list(self.cfg.attributes)} decodes with their classes, shaped like z "
                f"{tuple(z.shape[:-1])} + ({len(self.cfg.attributes)},); got {got}"
            )
        embedded = [emb(attributes[..., i]) for i, emb in enumerate(self.attribute_embed)]
        return torch.cat([z, *(e.to(z.dtype) for e in embedded)], dim=-1)

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor, sample: bool | None = None, bars: torch.Tensor | None = None,
        attributes: torch.Tensor | None = None,
    ) -> VAEOutput:  # fmt: skip
        """Teacher-forced pass. z is sampled in training and mu in eval, unless `sample` says otherwise."""
        mu, logvar, present = self.posterior(tokens, mask, bars)
        sample = self.training if sample is None else sample
        z = self.reparameterize(mu, logvar) if sample else mu
        dec_bars = bars[:, :-1] if self.per_bar else None
        inputs = tokens[:, :-1]  # (B, T-1): predict tokens[:, 1:]
        if self.training and self.cfg.token_dropout > 0:
            inputs = drop_tokens(inputs, mask[:, :-1], self.cfg.token_dropout)
        logits = self.decode(inputs, z, bars=dec_bars, attributes=attributes)
        return VAEOutput(logits, mu, logvar, z, present)


def drop_tokens(inputs: torch.Tensor, mask: torch.Tensor, p: float) -> torch.Tensor:
    """inputs, mask (B, T) -> inputs with each real token after BOS replaced by MASK_ID with probability p.
    BOS (position 0) stays: every row keeps its start; padding stays padding."""
    drop = (torch.rand(inputs.shape, device=inputs.device) < p) & mask.bool()
    drop[:, 0] = False
    return inputs.masked_fill(drop, MASK_ID)


def latent_mask(bars: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """(B, K) True where row b holds bar k: bars (B, T) of BOS + segment + EOS rows, mask (B, T)."""
    body = bar_body(mask)
    last = torch.where(body, bars, torch.full_like(bars, -1)).max(dim=1).values  # (B,) a row's last bar
    return torch.arange(k, device=bars.device)[None, :] <= last[:, None]


def _init_weights(m: nn.Module) -> None:
    # GPT-2 style: small normal weights, zero biases; keeps early logits near uniform.
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.normal_(m.weight, std=0.02)


def cat_latents(parts: list[torch.Tensor], per_bar: bool) -> torch.Tensor:
    """Batches of latents (N_i, c), or per bar (N_i, K_i, c) or their masks (N_i, K_i) -> one tensor along
    N. Batches differ in their most bars: per bar each is padded to the largest K_i with absent bars
    (zero: the prior; False in a mask)."""
    if not per_bar:
        return torch.cat(parts)
    k = max(p.shape[1] for p in parts)
    return torch.cat([torch.cat([p, p.new_zeros(p.shape[0], k - p.shape[1], *p.shape[2:])], dim=1) for p in parts])

