"""LightningModule: the ELBO with a β schedule and free bits, and live posterior-collapse metrics.

Logged every `log_every_n_steps` training steps:
    train/loss, train/recon (nats/segment), train/recon_tok (nats/token), train/kl (nats/segment),
    train/kl_fb (after free bits), train/beta, train/lr
Logged at every validation, on the fixed val sample (`data.val_segments` segments across pieces, the
same at every validation; z = mu except where a sampled z is said):
    val/recon (nats/token), val/ppl, val/kl = val/rate (nats/segment), val/distortion (summed token NLL
    at one seeded z ~ q(z|x), nats/segment), val/elbo (negative ELBO = distortion + rate),
    val/au (active units over the whole sample), val/mi (I(x;z) against the whole sample's aggregate
    posterior), val/zgap (NLL/token with the z of a segment of *another piece* minus NLL with its own
    z: ~0 = z unused), val/recon_acc (teacher-forced token accuracy). None depends on batch order.
The KL of each latent dim goes to `kl_per_dim.jsonl` in the run dir (and a wandb histogram), not to
64 columns of metrics.csv.

With one latent per bar (`model.latent=bar`) the same keys are logged in the same units: KL, rate and
MI in nats per segment (summed over its bars; free bits per dim over all bar latents), AU over the bar
latents, z-gap with every bar's latent swapped for the same bar's latent of a segment of another piece.
"""

from __future__ import annotations

import logging

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from musicvae.errors import UserError
from musicvae.generation.inference import segment_classes
from musicvae.metrics.latent import (
    LatentEvalConfig,
    active_units,
    group_derangement,
    mutual_information_terms,
)
from musicvae.models.checkpoint import ATTRIBUTE_BINS_KEY, checkpoint_tag
from musicvae.models.vae import MusicVAE, VAEConfig, cat_latents
from musicvae.tokens.attribute_classes import AttributeBins, SegmentLabeler, latent_values
from musicvae.tokens.attributes import AttributeDefinitions, AttributeReader
from musicvae.tokens.tokenize import tokenizer_from_dict
from musicvae.training.kl import KLConfig, beta_at, kl_per_dim, segment_kl
from musicvae.training.optim import OptimConfig, build_optimizer, use_fused_adamw
from musicvae.training.validation import ValidationSums, ValReference, ValSampleFixed, existing

log = logging.getLogger(__name__)

EVAL_SEED = 0  # the val sample's noise and z-gap partners: the same for every run, whatever its seed


class VAEModule(pl.LightningModule):
    """Owns the loss and the logging. Its hyperparameters make a checkpoint self-contained."""

    def __init__(
        self,
        model: dict,
        kl: dict,
        optim: dict,
        tokenizer: dict | None = None,
        data: dict | None = None,
        au_threshold: float = LatentEvalConfig.au_threshold,
        data_source: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()  # model config, tokenizer params and data settings travel in the ckpt
        self.model = MusicVAE(VAEConfig.from_settings(model))
        if model.get("compile"):
            self.model.compile_parts()  # training, validation and the post-training samples
        self.kl_cfg = KLConfig(**kl)
        self.val_sums = ValidationSums()  # the validation's streamed sums, reduced across DDP ranks by torchmetrics
        self.last_kl_dims: torch.Tensor | None = None  # (c,) of the last validation: KLPerDimLog writes it
        self._fixed: ValSampleFixed | None = None  # what is drawn once per val sample (noise, partners, classes)
        self._ref: ValReference | None = None  # the val sample's posteriors, during a validation only
        self._fused = False  # whether configure_optimizers chose fused AdamW (gradient clipping follows it)
        # model.attributes: class edges fitted on the training split at the first setup (then kept in the
        # checkpoint, so sampling needs nothing else), and the reader of attribute values from tokens
        self.attribute_bins: AttributeBins | None = None
        self._attribute_reader: AttributeReader | None = None

    # ----- losses -------------------------------------------------------------------------------
    @staticmethod
    def token_nll(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-token NLL of tokens[:, 1:] under logits (B, T-1, V), zero on padding. -> (B, T-1)."""
        b, t, v = logits.shape
        # Flat (B*T, V) rows: cross_entropy over a transposed (B, V, T) view runs several times slower on CPU.
        nll = F.cross_entropy(logits.reshape(b * t, v).float(), tokens[:, 1:].reshape(b * t), reduction="none")
        return nll.view(b, t) * mask[:, 1:]

    def loss_terms(
        self, tokens: torch.Tensor, mask: torch.Tensor, step: int, bars: torch.Tensor | None = None,
        attributes: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        """The training loss and its parts on one batch at a global step (z ~ q(z|x)).

        loss = recon + β(step) · Σ_d max(mean_b KL_d, free_bits); recon and KL in nats per segment
        (per bar: see `segment_kl`).
        """
        out = self.model(tokens, mask, sample=True, bars=bars, attributes=attributes)
        nll = self.token_nll(out.logits, tokens, mask)  # (B, T-1)
        recon = nll.sum() / tokens.shape[0]  # nats per segment
        kl_dims = kl_per_dim(out.mu.float(), out.logvar.float())  # (B, c) or (B, K, c)
        kl, kl_fb = segment_kl(kl_dims, out.latent_mask, self.kl_cfg.free_bits)
        beta = beta_at(step, self.kl_cfg)
        return {
            "loss": recon + beta * kl_fb,
            "recon": recon,
            "recon_tok": nll.sum() / mask[:, 1:].sum(),
            "kl": kl,
            "kl_fb": kl_fb,
            "beta": torch.tensor(beta),
        }

    def training_step(self, batch, batch_idx):
        tokens, mask, bars, *labels = batch  # (B, T) each; with model.attributes, classes (B, [K,] A) too
        if self.model.cfg.attributes and not labels:
            raise UserError("model.attributes: train batches must carry their classes (MidiDataModule.labeler)")
        terms = self.loss_terms(tokens, mask, self.global_step, bars, labels[0] if labels else None)
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, prog_bar=False)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        self.log("kl", terms["kl"], prog_bar=True, logger=False)
        return terms["loss"]

    # ----- validation: on the fixed sample, order-free, streamed sums reduced once ------------------
    # Batches are (tokens, mask, bars, positions) over `datamodule.val_sample` (see musicvae.data.eval_sample).
    # At the start of each validation every rank encodes the whole sample (an encoder pass: cheap next to
    # the three decoder passes per batch) into a reference of posteriors. Each segment's own posterior,
    # its seeded noise and its z-gap partner (a segment of another piece) are looked up by position, and
    # MI sums log q(z_i) over the whole reference: no metric depends on the batch order or composition,
    # and nothing is gathered across ranks, only sums are reduced.
    def on_validation_epoch_start(self):
        self.val_sums.reset()
        self.val_sums.update()  # every rank has updated (a rank without batches still sums its zeros)
        with torch.no_grad(), self.trainer.precision_plugin.val_step_context():
            self._ref = self._encode_val_sample()

    def _encode_val_sample(self) -> ValReference:
        """The whole val sample's posteriors, float32, with its fixed noise, partners and classes."""
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "val_sample"):
            raise UserError("validation needs the MidiDataModule's fixed val sample: pass datamodule=")
        mus, logvars, present, inputs = [], [], [], []
        for tokens, mask, bars, _ in dm.val_sample_batches():
            tokens, mask, bars = tokens.to(self.device), mask.to(self.device), bars.to(self.device)
            mu, logvar, latents = self.model.posterior(tokens, mask, bars)
            mus.append(mu.float())
            logvars.append(logvar.float())
            present.append(torch.ones(len(mu), 1, dtype=torch.bool, device=mu.device) if latents is None else latents)
            inputs.append((tokens, mask))
        per_bar = self.model.per_bar  # batches may differ in their most bars: padded with absent bars (0, 0)
        mu, logvar = cat_latents(mus, per_bar), cat_latents(logvars, per_bar)
        if self._fixed is None or self._fixed.sample is not dm.val_sample:
            self._fixed = self._draw_fixed(dm.val_sample, mu, inputs)
        partners = self._fixed.partners.to(self.device) if self._fixed.partners is not None else None
        return ValReference(
            mu=mu, logvar=logvar, eps=self._fixed.eps.to(self.device), partners=partners,
            present=cat_latents(present, per_bar), attributes=self._fixed.attributes,
        )  # fmt: skip

    def _draw_fixed(self, sample, mu: torch.Tensor, inputs: list) -> ValSampleFixed:
        """The val sample's z-gap partners, noise (like mu) and own attribute classes: the same at every
        validation of every run (EVAL_SEED), so the metrics compare across validations and runs."""
        gen = torch.Generator().manual_seed(EVAL_SEED)
        partners = group_derangement(sample.pieces, gen) if len(set(sample.pieces.tolist())) > 1 else None
        eps = torch.randn(mu.shape, generator=gen)
        k = mu.shape[1] if self.model.per_bar else None
        attrs = [self.batch_attributes(t, m, k) for t, m in inputs] if self.model.cfg.attributes else None
        return ValSampleFixed(sample=sample, eps=eps, partners=partners, attributes=torch.cat(attrs) if attrs else None)

    def validation_step(self, batch, batch_idx):
        tokens, mask, bars, positions = batch  # (B, T) x 3, (B,)
        ref = self._ref
        mu, logvar = ref.mu[positions], ref.logvar[positions]  # (B, [K,] c): the reference's own rows
        inputs, target_mask = tokens[:, :-1], mask[:, 1:]
        in_bars = bars[:, :-1] if self.model.per_bar else None
        attrs = None if ref.attributes is None else ref.attributes[positions]  # the segment's own classes
        logits = self.model.decode(inputs, mu, bars=in_bars, attributes=attrs)  # z = mu: recon and accuracy
        nll = self.token_nll(logits, tokens, mask)  # (B, T-1)
        z = self.model.reparameterize(mu, logvar, ref.eps[positions])  # z ~ q(z|x), seeded by position
        nll_sampled = self.token_nll(self.model.decode(inputs, z, bars=in_bars, attributes=attrs), tokens, mask)
        correct = (logits.argmax(-1) == tokens[:, 1:]) & target_mask
        own, every = ref.present[positions], ref.present
        mi = mutual_information_terms(
            existing(z, own), existing(mu, own), existing(logvar, own), existing(ref.mu, every),
            existing(ref.logvar, every),
        )  # per latent: one per segment, or one per bar
        sums = dict(
            nll=nll.sum(), nll_sampled=nll_sampled.sum(), tokens=target_mask.sum(), correct=correct.sum(),
            segments=torch.tensor(len(positions)), mi=mi.sum(),
        )  # fmt: skip
        if ref.partners is not None:  # z-gap: the same tokens decoded from another piece's z (bar k: its bar k)
            partner_mu = ref.mu[ref.partners[positions]]
            partner_logits = self.model.decode(inputs, partner_mu, bars=in_bars, attributes=attrs)
            sums["nll_partner"] = self.token_nll(partner_logits, tokens, mask).sum()
        self.val_sums.update(**sums)

    def on_validation_epoch_end(self):
        s = self.val_sums.compute()  # summed over ranks
        n = s["segments"]
        if n == 0:
            return
        present = self._ref.present  # (N, K): which latents exist (all of them per segment)
        mu, logvar = existing(self._ref.mu, present), existing(self._ref.logvar, present)  # (latents, c)
        kl_dims = kl_per_dim(mu.double(), logvar.double()).sum(0) / len(present)  # (c,) nats per segment
        kl_seg = kl_dims.sum()
        recon_tok = s["nll"] / s["tokens"]
        n_active, _ = active_units(mu, self.hparams.au_threshold) if len(mu) > 1 else (0, None)
        metrics = {
            "val/recon": recon_tok,
            "val/ppl": torch.exp(recon_tok),
            "val/kl": kl_seg,
            "val/rate": kl_seg,  # R = E_x KL(q(z|x) || p(z)) (Alemi et al. 2018): the same number, named for R–D
            "val/distortion": s["nll_sampled"] / n,  # D = E_x E_q[-log p(x|z)], nats/segment, one z per x
            "val/elbo": s["nll_sampled"] / n + kl_seg,  # -ELBO = D + R
            "val/au": torch.tensor(float(n_active)),
            "val/mi": s["mi"] / n,  # nats per segment (per bar: the sum of its bars' terms)
            "val/recon_acc": s["correct"] / s["tokens"],
        }
        if self._ref.partners is not None:
            metrics["val/zgap"] = (s["nll_partner"] - s["nll"]) / s["tokens"]
        elif not self.trainer.sanity_checking:
            log.warning("the val sample holds one piece only: val/zgap (partners from other pieces) not logged")
        self.log_dict({k: v.float() for k, v in metrics.items()}, sync_dist=False)
        self.last_kl_dims = kl_dims.float().cpu()
        self._ref = None

    # ----- attributes (model.attributes): classes of each latent's bar(s), from the tokens -----------------
    def batch_attributes(self, tokens: torch.Tensor, mask: torch.Tensor, k: int | None = None) -> torch.Tensor | None:
        """Classes of the model's attributes for each latent of a batch: (B, K, A) per bar (K: `k` or the
        batch's most bars), (B, A) per segment; None for a model without attributes."""
        if not self.model.cfg.attributes:
            return None
        if self.attribute_bins is None:
            raise UserError("model.attributes needs class edges fitted on the training split: train through train()")
        rows = [row[1 : int(n) - 1] for row, n in zip(tokens.cpu().numpy(), mask.sum(1).tolist(), strict=True)]
        return segment_classes(self.model, self._reader(), self.attribute_bins, rows, k)

    def _reader(self) -> AttributeReader:
        """The reader under the definitions the class edges were fitted with."""
        if self._attribute_reader is None or self._attribute_reader.definitions != self.attribute_bins.definitions:
            self._attribute_reader = self.attribute_bins.reader(tokenizer_from_dict(self.hparams.tokenizer))
        return self._attribute_reader

    def fit_attribute_bins(self, segments, definitions: AttributeDefinitions | None = None) -> dict[str, list[int]]:
        """Class edges of every attribute over the latents of `segments` (the training split's token ids),
        read under `definitions`; returns the latents per class of each attribute."""
        reader = AttributeReader(tokenizer_from_dict(self.hparams.tokenizer), definitions)
        values = np.concatenate(latent_values(reader, segments, self.model.per_bar))
        self.attribute_bins = AttributeBins.fit(values, definitions)
        return self.attribute_bins.histogram(values)

    def on_fit_start(self) -> None:
        """model.attributes: the datamodule's train batches carry their classes from here on, labelled with the
        edges this run trains with (fitted at setup, or a resumed checkpoint's: restored before fit starts)."""
        dm = getattr(self.trainer, "datamodule", None)
        if self.model.cfg.attributes and self.attribute_bins is not None and hasattr(dm, "labeler"):
            names = tuple(self.model.cfg.attributes)
            dm.labeler = SegmentLabeler(self._reader(), self.attribute_bins, names, self.model.per_bar)

    # ----- optimisation -------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.model.cfg.attributes and self.attribute_bins is None and dm is not None and "train" in dm.datasets:
            arrays = dm.datasets["train"].arrays  # every rank fits the same edges from the same split
            settings = dm.settings
            counts = self.fit_attribute_bins((arrays.window(i) for i in range(len(arrays))), settings.attributes)
            log.info("attribute classes fitted on %d train segments (%s): %s", len(arrays),
                     settings.attributes, self.attribute_bins.edges)  # fmt: skip
            check_attribute_classes(counts, self.model.cfg.attributes, settings.allow_empty_attribute_classes)
        if self.device.type == "cuda":
            # TF32 for fp32 matmuls (fp32 range, 10-bit mantissa): ~7x the fp32 rate on Hopper/Ampere; the
            # loss, softmax and KL stay fp32. Under bf16-mixed it only touches the ops autocast leaves fp32.
            torch.set_float32_matmul_precision("high")

    def configure_optimizers(self):
        cfg = OptimConfig(**self.hparams.optim)  # a checkpoint from before optim.schedule reads as cosine
        self._fused = use_fused_adamw(cfg.fused, self.device, self.trainer.precision)
        total = int(self.trainer.estimated_stepping_batches)  # max_steps, or max_epochs x batches per epoch
        opt, schedule = build_optimizer(self, cfg, self._fused, total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # Lightning refuses to clip for an optimizer that unscales inside step() (fused AdamW) under any
        # mixed precision (PR #15555), a rule for fp16's GradScaler. bf16-mixed has no scaler: the grads
        # are already true grads, so clipping them here is exactly what Lightning would do in fp32.
        if self._fused and gradient_clip_val and self.trainer.precision == "bf16-mixed":
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(self.parameters(), gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["musicvae"] = checkpoint_tag()  # read back by musicvae.models.checkpoint.read_checkpoint
        if self.attribute_bins is not None:
            checkpoint[ATTRIBUTE_BINS_KEY] = self.attribute_bins.to_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if checkpoint.get(ATTRIBUTE_BINS_KEY):  # a resumed run keeps the classes it trained with
            self.attribute_bins = AttributeBins.from_dict(checkpoint[ATTRIBUTE_BINS_KEY])


def check_attribute_classes(counts: dict[str, list[int]], names, allow_empty: bool) -> None:
    """Log the training latents per class of each conditioned attribute; UserError when one holds none (a
    model cannot learn a class it never sees, and requesting it would measure nothing) unless `allow_empty`."""
    for name in names:
        log.info("%s classes over the training latents: %s", name, counts[name])
    empty = {name: [c for c, n in enumerate(counts[name]) if n == 0] for name in names}
    empty = {name: classes for name, classes in empty.items() if classes}
    if empty and not allow_empty:
        listed = "; ".join(f"{name} class {', '.join(map(str, c))} ({counts[name]})" for name, c in empty.items())
        raise UserError(
            f"model.attributes: no training bar falls in {listed}. Train on music whose texture varies "
            "(data=mixed), or set data.attributes.allow_empty_classes=true to train anyway"
        )
    if empty:
        log.warning("attribute classes without a training latent: %s (data.attributes.allow_empty_classes=true)", empty)
