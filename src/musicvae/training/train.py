"""`train(cfg)`: a plain function (tests call it; scripts/train.py is a thin Hydra wrapper around it)."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import hydra.utils
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from musicvae.config import MOVED_KEYS
from musicvae.data import MidiDataModule
from musicvae.data.config import data_source
from musicvae.errors import Interrupted, UserError
from musicvae.evaluation.fidelity import FidelityConfig, evaluate_fidelity
from musicvae.evaluation.pieces import (
    PieceFidelityConfig,
    evaluate_pieces,
    flat_summary,
    held_out_pieces,
    pieces_table,
)
from musicvae.generation.audio import AudioConfig
from musicvae.generation.inference import LoadedCheckpoint
from musicvae.models.checkpoint import check_resumable, read_checkpoint
from musicvae.models.vae import MASK_ID
from musicvae.tokens.tokenize import tokenizer_to_dict
from musicvae.training.ddp import ddp_processes, launch_rank
from musicvae.training.faults import CheckpointOnInterrupt
from musicvae.training.kl import KLPerDimLog
from musicvae.training.media import MediaConfig, ValidationMedia
from musicvae.training.module import VAEModule
from musicvae.training.resume import (
    FINISHED,
    BestAndLastCheckpoint,
    ResumingCSVLogger,
    finished_result,
    last_checkpoint,
    mark_finished,
    resume_checkpoint,
    run_dir_of_checkpoint,
    trim_kl_per_dim,
)
from musicvae.training.seeding import PerRankSeed

log = logging.getLogger(__name__)

# Data settings a checkpoint carries, so that sampling cuts and decodes MIDI the way training did.
DATA_KEYS_IN_CHECKPOINT = ("name", "bars", "hop_bars", "max_tokens", "overlong", "merge_tracks", "keep_drums")


def run_dir_of(cfg: DictConfig) -> Path:
    """The run's output folder: cfg.output_dir, else the folder of the checkpoint it resumes (its curve
    goes on in one place), else Hydra's run dir, else outputs/train/<time>."""
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    if cfg.get("ckpt_path") and cfg.ckpt_path != "last" and (own := run_dir_of_checkpoint(cfg.ckpt_path)):
        return own
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # not inside @hydra.main
        return Path("outputs/train") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def build_module(cfg: DictConfig, dm: MidiDataModule) -> VAEModule:
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("layers", None)  # expanded into encoder_layers / decoder_layers by the config
    if model.get("token_dropout") and dm.tokenizer.vocab.get("MASK_None") != MASK_ID:
        raise UserError(
            f"model.token_dropout={model['token_dropout']} replaces decoder inputs with MASK (id {MASK_ID}); "
            "this tokenizer has none there: set tokenizer.special_tokens=[PAD,BOS,EOS,MASK] or model.token_dropout=0"
        )
    return VAEModule(
        model=dict(model, vocab_size=dm.vocab_size, max_len=dm.max_len),
        kl=OmegaConf.to_container(cfg.kl, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        tokenizer=tokenizer_to_dict(dm.tokenizer),
        data={k: cfg.data.get(k) for k in DATA_KEYS_IN_CHECKPOINT},
        data_source=data_source(cfg.data),
        au_threshold=float(cfg.eval.au_threshold),
    )


def _instantiate(group: str, cfg: DictConfig | None, runtime: Callable[[type], dict]) -> list:
    """The objects of a config group of named `_target_` nodes (logger, callbacks), in order; null entries
    skipped. `runtime(cls)` gives what only the run knows (its folder, its step), passed where the node
    does not set it. A node without `_target_` or naming no class is one UserError."""
    objects = []
    for name, node in (cfg or {}).items():
        if node is None:
            continue
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise UserError(f"{group}.{name} needs a _target_ (a class to build), e.g. +{group}.{name}._target_=...")
        try:
            cls = hydra.utils.get_class(node._target_)
        except Exception as e:  # noqa: BLE001 - Hydra's error for a target it cannot import
            raise UserError(f"{group}.{name}._target_={node._target_!r} names no class that imports here ({e})") from None
        extra = {k: v for k, v in runtime(cls).items() if k not in node}
        try:  # partial first: a runtime argument may share a name with instantiate's own (wandb's `config`)
            objects.append(hydra.utils.instantiate(node, _partial_=True, _convert_="all")(**extra))
        except ModuleNotFoundError as e:  # e.g. TensorBoardLogger without tensorboard(X)
            raise UserError(f"{group}.{name} ({node._target_}) needs a package that is not installed: {e}. "
                            "For logger=tensorboard: pip install 'musicvae[tensorboard]'") from None
    return objects


def build_loggers(cfg: DictConfig, run_dir: Path, resume_step: int = 0) -> list[Logger]:
    """cfg.logger's loggers (configs/logger/), each writing into the run dir."""

    def runtime(cls: type) -> dict:
        args: dict = {"save_dir": str(run_dir)}
        if issubclass(cls, ResumingCSVLogger):  # -> run_dir/metrics.csv, keeping the rows before a resumed step
            if resume_step or not (run_dir / "metrics.csv").exists():  # nothing is lost: say nothing
                warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
            args.update(name="", version="", resume_step=resume_step)
        elif issubclass(cls, WandbLogger):
            args.update(name=run_dir.name, config=OmegaConf.to_container(cfg, resolve=True))
        elif issubclass(cls, TensorBoardLogger):
            args.update(version="")
        return args

    return _instantiate("logger", cfg.get("logger"), runtime)


def build_callbacks(cfg: DictConfig, run_dir: Path) -> list[Callback]:
    """cfg.callbacks (configs/callbacks/): a ModelCheckpoint without a dirpath writes into the run's checkpoints/."""
    return _instantiate(
        "callbacks", cfg.get("callbacks"),
        lambda cls: {"dirpath": str(run_dir / "checkpoints")} if issubclass(cls, ModelCheckpoint) else {},
    )  # fmt: skip


def check_splits(dm: MidiDataModule) -> None:
    """UserError when a split is too small to train or validate on (the split is by piece)."""
    sizes = {split: len(dm.datasets[split]) for split in ("train", "val")}
    if sizes["train"] == 0 or sizes["val"] < 2:
        pieces = dm.manifest["files"]["tokenized"]
        raise UserError(
            f"{pieces} usable piece(s) gave {sizes['train']} train and {sizes['val']} val segments: add MIDI files "
            f"to {dm.settings.path}, or raise data.val_fraction (pieces are split whole, not segments)"
        )


class CheckSplits(Callback):
    """check_splits once Lightning has set the data up (after prepare_data on global rank 0 only)."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        check_splits(trainer.datamodule)


def check_validation_limits(cfg: DictConfig) -> None:
    """UserError when trainer.limit_val_batches would cut the fixed val sample (by position, not at random)."""
    limit = cfg.trainer.get("limit_val_batches")
    if limit is not None and float(limit) not in (0.0, 1.0):
        raise UserError(
            f"trainer.limit_val_batches={limit} would validate on a prefix of the fixed val sample; "
            "set its size with data.val_segments instead (e.g. data.val_segments=256), or 0 to skip validation"
        )


def held_out_segments(dm: MidiDataModule, n: int) -> list[list[int]]:
    """n segments of the test split (of val if test is empty) spread evenly over it (every k-th: across its
    pieces, not the first piece's neighbouring windows), as token lists; the same for every run."""
    split = dm.datasets["test"] if len(dm.datasets["test"]) else dm.datasets["val"]
    return split.spread(n)


def prepare_run_dir(run_dir: Path, cfg: DictConfig, ckpt_path: Path | None, resume_step: int) -> None:
    """The run dir before training: its resolved config.yaml (what ranks > 0 of a DDP run train from),
    no finished.json until the run ends, kl_per_dim.jsonl trimmed to the resumed step (or dropped)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / FINISHED).unlink(missing_ok=True)  # until this run, too, trains to its end
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    if ckpt_path:  # the curve goes on: records after the checkpoint are logged again
        trim_kl_per_dim(run_dir / "kl_per_dim.jsonl", resume_step)
        log.info("resuming %s from %s (step %d)", run_dir, ckpt_path, resume_step)
    else:  # a fresh run in a reused folder: its CSV is rewritten, so is this
        (run_dir / "kl_per_dim.jsonl").unlink(missing_ok=True)


def build_trainer(cfg: DictConfig, run_dir: Path, loggers: list[Logger], callbacks: list[Callback]) -> pl.Trainer:
    """cfg.trainer (configs/trainer/, `_target_: pytorch_lightning.Trainer`) with the run's folder, loggers and
    callbacks. A configuration of the old form (our keys among the Trainer's) is told where they went."""
    for key, instead in MOVED_KEYS.items():  # a config.yaml of an older run, or a config file of the user's
        group, _, name = key.partition(".")
        if group == "trainer" and name in cfg.trainer:
            raise UserError(f"{key} is no Trainer argument and has moved: {instead}")
    node = cfg.trainer if "_target_" in cfg.trainer else OmegaConf.merge({"_target_": "pytorch_lightning.Trainer"}, cfg.trainer)
    return hydra.utils.instantiate(node, default_root_dir=str(run_dir), logger=loggers or False, callbacks=callbacks,
                                   _convert_="all")  # fmt: skip


def run_callbacks(cfg: DictConfig, run_dir: Path, audio: AudioConfig | None) -> tuple[ModelCheckpoint, list[Callback]]:
    """The callbacks of a run, in order: the split check, per-rank seeding, the best/last checkpoints, the
    configured ones (configs/callbacks/), the checkpoint on SIGTERM, kl_per_dim.jsonl, media, the progress bar. Returns the
    best/last ModelCheckpoint too (its paths are the run's result)."""
    checkpoints = BestAndLastCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best-{step}", monitor="val/elbo", mode="min", save_last=True,
        save_top_k=1, auto_insert_metric_name=False,
    )  # fmt: skip
    interrupt = CheckpointOnInterrupt(last_checkpoint(run_dir))
    callbacks = [CheckSplits(), PerRankSeed(cfg.seed), checkpoints, *build_callbacks(cfg, run_dir), interrupt, KLPerDimLog()]
    media = MediaConfig(**OmegaConf.to_container(cfg.media, resolve=True)) if cfg.get("media") else None
    if media and media.every_n_steps > 0:
        callbacks.append(ValidationMedia(media, run_dir, audio, seed=int(cfg.seed)))
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(RichProgressBar())
    return checkpoints, callbacks


def fit(trainer: pl.Trainer, module: VAEModule, dm: MidiDataModule, run_dir: Path, ckpt_path: Path | None) -> None:
    """trainer.fit (DDP ranks started as `ddp_processes` says); SIGTERM becomes `Interrupted` naming last.ckpt."""
    try:
        with ddp_processes(trainer, run_dir):
            trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None,
                        weights_only=True)  # read_checkpoint loaded it so first (the same check, one clear error)
    except SIGTERMException:
        last = last_checkpoint(run_dir)
        raise Interrupted(
            f"SIGTERM at step {trainer.global_step}: {last} saved; resume with ckpt_path={last} "
            "(or start the same sweep again: resume=true)"
        ) from None


def final_fidelity(cfg: DictConfig, module: VAEModule, dm: MidiDataModule, run_dir: Path, audio: AudioConfig | None,
                   loggers: list[Logger]) -> dict | None:  # fmt: skip
    """After training (rank 0): 2-bar test segments reconstructed and prior samples (eval.fidelity), whole test
    pieces reconstructed (eval.pieces) -> fidelity.json (the whole-piece means as its piece_* keys), pieces.json,
    samples/, and wandb's run summary; None when eval asks for neither."""
    fid, pieces = cfg.eval.get("fidelity"), cfg.eval.get("pieces")
    fidelity = None
    if fid and (fid.n_reconstructions or fid.n_samples):
        fid_cfg = FidelityConfig(**OmegaConf.to_container(fid, resolve=True), seed=int(cfg.seed))
        segments = held_out_segments(dm, fid_cfg.n_reconstructions)
        fidelity = evaluate_fidelity(module.model, dm.tokenizer, segments, fid_cfg, run_dir, module.attribute_bins, audio)
    if pieces and pieces.n_pieces and not (fidelity or {}).get("skipped"):
        fidelity = (fidelity or {}) | whole_piece_fidelity(cfg, module, dm, run_dir)
        (run_dir / "fidelity.json").write_text(json.dumps(fidelity, indent=2))
    for lg in loggers:
        if fidelity and isinstance(lg, WandbLogger):
            lg.experiment.summary.update({f"fidelity/{k}": v for k, v in fidelity.items()})
    return fidelity


def whole_piece_fidelity(cfg: DictConfig, module: VAEModule, dm: MidiDataModule, run_dir: Path) -> dict:
    """Whole test pieces reconstructed as sample.py does (musicvae.evaluation.pieces) -> pieces.json; returns
    the means fidelity.json keeps ({} when the weights are not finite: nothing can be decoded)."""
    settings = PieceFidelityConfig(**OmegaConf.to_container(cfg.eval.pieces, resolve=True), seed=int(cfg.seed))
    loaded = LoadedCheckpoint(module.model, dm.tokenizer, dict(module.hparams.get("data") or {}), run_dir,
                              module.hparams.get("data_source"), module.attribute_bins)  # fmt: skip
    try:
        result = evaluate_pieces(loaded, held_out_pieces(dm, settings.n_pieces), settings)
    except UserError as e:  # weights gone NaN (NonFiniteModel), no held-out piece: the run itself stands
        log.warning("whole-piece fidelity skipped: %s", e)
        return {}
    (run_dir / "pieces.json").write_text(json.dumps(result, indent=2))
    log.info("whole-piece fidelity:\n%s", pieces_table(result))
    return flat_summary(result)


def train(cfg: DictConfig) -> dict:
    """Train one VAE as `cfg` says. Returns the run dir, checkpoint paths and the last logged metrics.

    With `skip_finished=true`, a run dir that already holds a finished run of the same config is left as
    it is (a sweep interrupted and started again into the same sweep dir redoes only what is missing).
    """
    pl.seed_everything(int(cfg.seed), workers=True)
    run_dir = run_dir_of(cfg)
    if cfg.get("skip_finished") and (done := finished_result(run_dir, cfg)) is not None:
        log.info("%s finished earlier with this config: skipped (skip_finished=true)", run_dir)
        return dict(done, run_dir=run_dir)
    ckpt_path = resume_checkpoint(cfg.get("ckpt_path"), bool(cfg.get("resume")), run_dir)
    resume = read_checkpoint(ckpt_path) if ckpt_path else None  # fail early, before the data
    check_validation_limits(cfg)
    resume_step = int(resume["global_step"]) if resume else 0
    if launch_rank() == 0:  # the other ranks of a DDP run train into the folder rank 0 prepared
        prepare_run_dir(run_dir, cfg, ckpt_path, resume_step)

    # No data is read here: Lightning calls dm.prepare_data (export the corpus, build the cache) on global
    # rank 0 only while the other ranks wait, then dm.setup on every rank. The model needs only the
    # tokenizer, which the config defines.
    dm = MidiDataModule(cfg.data, cfg.tokenizer)
    dm.prepare_data_per_node = dm.settings.prepare_data_per_node
    module = build_module(cfg, dm)
    if resume is not None:
        check_resumable(resume, module.hparams, ckpt_path)

    audio = AudioConfig.from_value(cfg.get("audio"))
    checkpoints, callbacks = run_callbacks(cfg, run_dir, audio)
    loggers = build_loggers(cfg, run_dir, resume_step)
    # Under DDP the module reduces its validation sums across ranks itself: Lightning's advice to log them
    # with sync_dist=True (which would average the reduced values once more) does not apply.
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('val/")
    trainer = build_trainer(cfg, run_dir, loggers, callbacks)
    log.info("run dir: %s | conditioning: %s", run_dir, cfg.model.conditioning.mode)
    fidelity = None
    try:
        fit(trainer, module, dm, run_dir, ckpt_path)
        if trainer.is_global_zero:
            fidelity = final_fidelity(cfg, module, dm, run_dir, audio, loggers)
    finally:
        if any(isinstance(lg, WandbLogger) for lg in loggers):
            import wandb

            wandb.finish()  # a Hydra multirun logs every run only if each one is finished
    result = {
        "last_ckpt": checkpoints.last_model_path,
        "best_ckpt": checkpoints.best_model_path,
        "global_step": trainer.global_step,
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "fidelity": fidelity,
    }
    if trainer.is_global_zero and (trainer.max_steps <= 0 or trainer.global_step >= trainer.max_steps):
        mark_finished(run_dir, cfg, result)
    return dict(result, run_dir=run_dir)
