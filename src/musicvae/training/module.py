"""LightningModule: the ELBO with a β schedule and free bits, and live posterior-collapse metrics.

Logged every `log_every_n_steps` training steps:
    train/loss, train/recon (nats/segment), train/recon_tok (nats/token), train/kl (nats/segment),
    train/kl_fb (after free bits), train/beta, train/lr
Logged at every validation (z = mu, as at evaluation, except val/elbo's sampled z):
    val/recon (nats/token), val/ppl, val/kl (nats/segment), val/elbo (negative ELBO, nats/segment:
    summed token NLL at one z ~ q(z|x) + KL), val/au (active units), val/mi (I(x;z), minibatch estimate),
    val/zgap (NLL/token with z shuffled across the batch minus NLL with its own z: ~0 = z unused),
    val/recon_acc (teacher-forced token accuracy)
The KL of each latent dim goes to `kl_per_dim.jsonl` in the run dir (and a wandb histogram), not to
64 columns of metrics.csv.
"""

from __future__ import annotations

import json
import math
import pickle
import zipfile
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from musicvae import __version__
from musicvae.errors import UserError
from musicvae.metrics.latent import active_units, derangement, mutual_information
from musicvae.models.vae import MusicVAE, VAEConfig
from musicvae.training.kl import KLConfig, beta_at, free_bits_kl, kl_per_dim

CHECKPOINT_FORMAT = 1  # bump when a checkpoint of an older version can no longer be loaded


class VAEModule(pl.LightningModule):
    """Owns the loss and the logging. Its hyperparameters make a checkpoint self-contained."""

    def __init__(
        self,
        model: dict,
        kl: dict,
        optim: dict,
        tokenizer: dict | None = None,
        data: dict | None = None,
        au_threshold: float = 0.01,
    ):
        super().__init__()
        self.save_hyperparameters()  # model config, tokenizer params and data settings travel in the ckpt
        self.model = MusicVAE(VAEConfig(**model))
        self.kl_cfg = KLConfig(**kl)
        self._val: dict[str, torch.Tensor] = {}
        self._val_mu: list[torch.Tensor] = []

    # ----- losses -------------------------------------------------------------------------------
    @staticmethod
    def token_nll(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-token NLL of tokens[:, 1:] under logits (B, T-1, V), zero on padding. -> (B, T-1)."""
        nll = F.cross_entropy(logits.transpose(1, 2).float(), tokens[:, 1:], reduction="none")
        return nll * mask[:, 1:]

    def training_step(self, batch, batch_idx):
        tokens, mask = batch  # (B, T) each
        out = self.model(tokens, mask, sample=True)
        nll = self.token_nll(out.logits, tokens, mask)  # (B, T-1)
        recon = nll.sum() / tokens.shape[0]  # nats per segment
        kl_dims = kl_per_dim(out.mu.float(), out.logvar.float())  # (B, c)
        kl = kl_dims.sum(1).mean()
        kl_fb = free_bits_kl(kl_dims, self.kl_cfg.free_bits)
        beta = beta_at(self.global_step, self.kl_cfg)
        loss = recon + beta * kl_fb
        self.log_dict(
            {
                "train/loss": loss,
                "train/recon": recon,
                "train/recon_tok": nll.sum() / mask[:, 1:].sum(),
                "train/kl": kl,
                "train/kl_fb": kl_fb,
                "train/beta": beta,
                "train/lr": self.trainer.optimizers[0].param_groups[0]["lr"],
            },
            prog_bar=False,
        )
        self.log("kl", kl, prog_bar=True, logger=False)
        return loss

    # ----- validation: accumulate sums over the split, reduce once at the end --------------------
    SUM_KEYS = ("nll", "nll_sampled", "tokens", "correct", "segments", "kl",
                "gap_nll_own", "gap_nll_shuffled", "gap_tokens", "mi", "mi_segments")  # fmt: skip

    def on_validation_epoch_start(self):
        # Every key exists on every rank from the start, so the DDP reductions always match.
        self._val = {k: torch.zeros((), dtype=torch.float64, device=self.device) for k in self.SUM_KEYS}
        self._val["kl_dims"] = torch.zeros(self.model.cfg.latent_dim, dtype=torch.float64, device=self.device)
        self._val_mu = []

    def _accumulate(self, **sums: torch.Tensor) -> None:
        for k, v in sums.items():
            self._val[k] += v.detach().double()

    def validation_step(self, batch, batch_idx):
        tokens, mask = batch
        b = tokens.shape[0]
        gen = torch.Generator().manual_seed(batch_idx)  # the same shuffles and samples at every validation
        mu, logvar = self.model.encode(tokens, mask)  # (B, c)
        mu, logvar = mu.float(), logvar.float()
        logits = self.model.decode(tokens[:, :-1], mu)  # z = mu: recon, accuracy and the z-gap
        nll = self.token_nll(logits, tokens, mask)  # (B, T-1)
        eps = torch.randn(mu.shape, generator=gen).to(mu.device)
        z = self.model.reparameterize(mu, logvar, eps)  # z ~ q(z|x): the ELBO's reconstruction term
        nll_sampled = self.token_nll(self.model.decode(tokens[:, :-1], z), tokens, mask)
        target_mask = mask[:, 1:]
        correct = (logits.argmax(-1) == tokens[:, 1:]) & target_mask
        kl_dims = kl_per_dim(mu, logvar)  # (B, c)
        self._accumulate(
            nll=nll.sum(), nll_sampled=nll_sampled.sum(), tokens=target_mask.sum(), correct=correct.sum(),
            segments=torch.tensor(b), kl=kl_dims.sum(), kl_dims=kl_dims.sum(0),
        )  # fmt: skip
        self._val_mu.append(mu.detach())
        if b >= 2:  # the z-shuffle gap and MI need at least two segments in the batch
            perm = derangement(b, generator=gen).to(mu.device)
            nll_shuffled = self.token_nll(self.model.decode(tokens[:, :-1], mu[perm]), tokens, mask)
            self._accumulate(
                gap_nll_own=nll.sum(), gap_nll_shuffled=nll_shuffled.sum(), gap_tokens=target_mask.sum(),
                mi=torch.tensor(mutual_information(mu, logvar, generator=gen) * b), mi_segments=torch.tensor(b),
            )  # fmt: skip

    def on_validation_epoch_end(self):
        s = {k: self.trainer.strategy.reduce(v, reduce_op="sum") for k, v in self._val.items()}
        mu = torch.cat(self._val_mu) if self._val_mu else torch.zeros(0, self.model.cfg.latent_dim, device=self.device)
        mu_all = self.all_gather(mu).reshape(-1, self.model.cfg.latent_dim)  # (N, c)
        n = s["segments"]
        if n == 0:
            return
        recon_tok = s["nll"] / s["tokens"]
        kl_seg = s["kl"] / n
        n_active, _ = active_units(mu_all.float(), self.hparams.au_threshold) if len(mu_all) > 1 else (0, None)
        metrics = {
            "val/recon": recon_tok,
            "val/ppl": torch.exp(recon_tok),
            "val/kl": kl_seg,
            "val/elbo": s["nll_sampled"] / n + kl_seg,  # -ELBO, one z ~ q(z|x) per segment
            "val/au": torch.tensor(float(n_active)),
            "val/recon_acc": s["correct"] / s["tokens"],
        }
        if s["gap_tokens"] > 0:
            metrics["val/zgap"] = (s["gap_nll_shuffled"] - s["gap_nll_own"]) / s["gap_tokens"]
            metrics["val/mi"] = s["mi"] / s["mi_segments"]
        self.log_dict({k: v.float() for k, v in metrics.items()}, sync_dist=False)
        self._log_kl_per_dim((s["kl_dims"] / n).float().cpu())

    def _log_kl_per_dim(self, kl_dims: torch.Tensor) -> None:
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        run_dir = getattr(self.trainer, "default_root_dir", None)
        if run_dir:
            with open(Path(run_dir) / "kl_per_dim.jsonl", "a") as f:
                f.write(json.dumps({"step": self.global_step, "kl": [round(x, 6) for x in kl_dims.tolist()]}) + "\n")
        for logger in self.loggers:
            if type(logger).__name__ == "WandbLogger":
                import wandb

                logger.experiment.log(
                    {"val/kl_per_dim": wandb.Histogram(kl_dims.numpy()), "trainer/global_step": self.global_step}
                )

    # ----- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.hparams.optim
        decay = [p for p in self.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.dim() < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg["lr"],
            betas=tuple(cfg["betas"]),
        )
        total = int(self.trainer.estimated_stepping_batches)  # max_steps, or max_epochs x batches per epoch
        schedule = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(step, cfg["warmup_steps"], total, cfg["min_lr_ratio"])
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["musicvae"] = {"format": CHECKPOINT_FORMAT, "version": __version__}


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to `min_ratio` at `total` steps (flat after)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def read_checkpoint(path: str | Path, device: str = "cpu") -> dict:
    """Load a musicvae training checkpoint as a dict; one clear UserError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist: pass the .ckpt of a training run (its checkpoints/ folder)")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as e:
        raise UserError(f"{path} is not a PyTorch checkpoint ({type(e).__name__}): pass a musicvae .ckpt") from None
    if not isinstance(ckpt, dict) or "musicvae" not in ckpt or "hyper_parameters" not in ckpt:
        raise UserError(f"{path} is not a musicvae training checkpoint (no model config in it)")
    fmt = ckpt["musicvae"].get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise UserError(
            f"{path} has checkpoint format {fmt} (musicvae {ckpt['musicvae'].get('version')}); this musicvae "
            f"reads format {CHECKPOINT_FORMAT}: use the version that trained it, or retrain"
        )
    return ckpt


def module_from_checkpoint(ckpt: dict, path: str | Path = "checkpoint") -> VAEModule:
    """The VAEModule a `read_checkpoint` dict describes, with its weights."""
    try:
        module = VAEModule(**ckpt["hyper_parameters"])
        module.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, KeyError) as e:
        raise UserError(f"{path} does not match this version's model ({str(e).splitlines()[0]})") from None
    return module


def check_resumable(ckpt: dict, module: VAEModule, path: str | Path) -> None:
    """UserError when the new run's model, tokenizer or data differ from those the checkpoint trained."""
    old = ckpt["hyper_parameters"]
    for key in ("model", "tokenizer", "data"):
        if old.get(key) != module.hparams.get(key):
            diff = sorted(k for k in set(old.get(key) or {}) | set(module.hparams.get(key) or {})
                          if (old.get(key) or {}).get(k) != (module.hparams.get(key) or {}).get(k))  # fmt: skip
            raise UserError(
                f"ckpt_path={path} was trained with other {key} settings ({', '.join(diff[:5])} differ): "
                f"resume with the run's own config (its config.yaml), or start a new run"
            )
