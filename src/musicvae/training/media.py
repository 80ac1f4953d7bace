"""What a run plays while it learns: reconstructions of fixed val segments and a prior sample, at validation.

Every `media.every_n_steps` (at the first validation at or after each multiple), rank 0 decodes
`n_segments` fixed val segments from z = mu and `n_prior` prior samples from the same z each time, and writes
under `<run dir>/media/`:

    inputs/input_000.{mid,png,ogg}          the segments themselves, once
    step_000600/recon_000.{mid,png,ogg}     their reconstructions at that step
    step_000600/prior_000.{mid,png,ogg}     the prior samples
    step_000600/tokens.html                 every sample's tokens as text

and, with the wandb logger, logs them at that step (`media/recon_0` as `wandb.Audio`, `media/recon_0_roll`
as `wandb.Image`, the inputs once, `media/tokens` as `wandb.Html`), so the dashboard's media panels play
the model learning; an offline run keeps the files in its wandb folder for `wandb sync`. Decoding draws from
a generator of its own: the training run is the same with or without media.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import WandbLogger

from musicvae.config import register_schema
from musicvae.generation.audio import AudioConfig
from musicvae.generation.decode import SamplingConfig
from musicvae.generation.inference import reconstruct_and_sample, token_rules
from musicvae.generation.render import tokens_to_pretty_midi, write_sample

log = logging.getLogger(__name__)


@dataclass
class MediaConfig:
    """The `media` node of configs/train.yaml."""

    every_n_steps: int = 600  # at the first validation at or after every N steps (0: never)
    n_segments: int = 2  # fixed val segments reconstructed (z = mu), beside their inputs once
    n_prior: int = 1  # prior samples (z ~ N(0, I)), the same z each time
    temperature: float = 1.0
    top_p: float = 0.9


@dataclass
class Written:
    """One decoded example on disk: its key in wandb, the files, its token text."""

    key: str  # recon_0, prior_0, input_0
    midi: Path
    png: Path
    audio: Path | None
    tokens: str


class ValidationMedia(Callback):
    """Decode, write and log examples at validation (see the module docstring)."""

    def __init__(self, cfg: MediaConfig, run_dir: Path, audio: AudioConfig | None, seed: int = 0):
        self.cfg, self.run_dir, self.audio, self.seed = cfg, Path(run_dir) / "media", audio, seed
        self.segments: list[list[int]] = []
        self.next_step = cfg.every_n_steps

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.cfg.every_n_steps > 0 and trainer.datamodule is not None:
            self.segments = trainer.datamodule.datasets["val"].spread(self.cfg.n_segments)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        every = self.cfg.every_n_steps
        if every > 0:  # the next multiple after the step training starts from (a resumed run's media went before)
            self.next_step = (trainer.global_step // every + 1) * every

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        every, step = self.cfg.every_n_steps, trainer.global_step
        if every <= 0 or trainer.sanity_checking or step < self.next_step:
            return
        self.next_step = (step // every + 1) * every
        if not trainer.is_global_zero:
            return
        written = self.decode(pl_module, trainer.datamodule.tokenizer, step)
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if wandb_loggers:
            payload = wandb_payload(written)
            for lg in wandb_loggers:
                lg.log_metrics(payload, step=step)
        log.info("media at step %d: %d example(s) in %s", step, len(written), self.run_dir)

    @torch.no_grad()
    def decode(self, pl_module: pl.LightningModule, tokenizer, step: int) -> list[Written]:
        """Decode this step's examples (the inputs too, the first time) and write them; -> what was written."""
        model, was_training = pl_module.model, pl_module.training
        model.eval()
        try:
            device = next(model.parameters()).device
            gen = torch.Generator(device=device).manual_seed(self.seed)  # the same prior z at every step
            cfg = SamplingConfig(self.cfg.temperature, 0, self.cfg.top_p, model.cfg.max_len - 1)
            rules = token_rules(tokenizer, grammar=True)
            examples = reconstruct_and_sample(model, tokenizer, self.segments, self.cfg.n_prior, cfg, rules, gen,
                                              attribute_bins=getattr(pl_module, "attribute_bins", None))  # fmt: skip
        finally:
            model.train(was_training)
        written = []
        if not (self.run_dir / "inputs").exists():
            written += self.write(tokenizer, "inputs", "input", self.segments, "input")
        folder = f"step_{step:06d}"
        written += self.write(tokenizer, folder, "recon", examples.reconstructions, f"reconstruction at step {step}")
        written += self.write(tokenizer, folder, "prior", examples.priors, f"prior sample at step {step}")
        (self.run_dir / folder / "tokens.html").write_text(tokens_html(written))
        return written

    def write(self, tokenizer, folder: str, kind: str, sequences: list[list[int]], title: str) -> list[Written]:
        out = self.run_dir / folder
        out.mkdir(parents=True, exist_ok=True)
        names = {i: t for t, i in tokenizer.vocab.items()}
        written = []
        for i, ids in enumerate(sequences):
            midi = out / f"{kind}_{i:03d}.mid"
            audio = write_sample(tokens_to_pretty_midi(tokenizer, ids)[0], midi, f"{title}, {kind} {i}", self.audio)
            text = " ".join(names.get(t, str(t)) for t in ids)
            written.append(Written(f"{kind}_{i}", midi, midi.with_suffix(".png"), audio, text))
        return written


def tokens_html(written: list[Written]) -> str:
    rows = "".join(f"<tr><th>{html.escape(w.key)}</th><td><code>{html.escape(w.tokens)}</code></td></tr>" for w in written)
    return f"<table>{rows}</table>"


def wandb_payload(written: list[Written]) -> dict:
    """wandb media for each example (audio, piano roll) and one HTML table of every example's tokens."""
    import wandb

    payload = {}
    for w in written:
        if w.audio is not None:
            payload[f"media/{w.key}"] = wandb.Audio(str(w.audio), caption=w.midi.name)
        payload[f"media/{w.key}_roll"] = wandb.Image(str(w.png), caption=w.midi.name)
    payload["media/tokens"] = wandb.Html(tokens_html(written))
    return payload


register_schema("media", MediaConfig)
