"""Checkpoint I/O, below both training and sampling: read a musicvae checkpoint, rebuild its model,
check that a new run may resume from it. Nothing here imports Lightning or the training package.

A checkpoint is Lightning's dict with our `hyper_parameters` (model config, KL and optimiser settings,
tokenizer, data settings: self-contained) and a `musicvae` entry {format, version} written by
`VAEModule.on_save_checkpoint`.

Checkpoints load with `weights_only=True`: tensors, plain containers and numbers only, so a checkpoint
from elsewhere cannot run code while it is read. Ours hold nothing else (the class edges and settings are
plain dicts, Lightning's loop and callback states plain data), so the allow-list of extra types,
`SAFE_GLOBALS`, is empty; a type added to a checkpoint later must be added there, deliberately.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch

from musicvae import __version__
from musicvae.errors import UserError
from musicvae.models.config import RUN_OPTIONS, VAEConfig
from musicvae.models.vae import MusicVAE

CHECKPOINT_FORMAT = 1  # bump when a checkpoint of an older version can no longer be loaded
SAFE_GLOBALS: list = []  # types beyond tensors and plain data that our checkpoints may hold (none today)
MODEL_PREFIX = "model."  # the LightningModule keeps the MusicVAE as `self.model`


def checkpoint_tag() -> dict:
    """What `on_save_checkpoint` stores under ckpt["musicvae"]."""
    return {"format": CHECKPOINT_FORMAT, "version": __version__}


def read_checkpoint(path: str | Path, device: str = "cpu") -> dict:
    """Load a musicvae training checkpoint as a dict; one clear UserError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist: pass the .ckpt of a training run (its checkpoints/ folder)")
    ckpt = safe_load(path, device)
    if not isinstance(ckpt, dict) or "musicvae" not in ckpt or "hyper_parameters" not in ckpt:
        raise UserError(f"{path} is not a musicvae training checkpoint (no model config in it)")
    fmt = ckpt["musicvae"].get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise UserError(
            f"{path} has checkpoint format {fmt} (musicvae {ckpt['musicvae'].get('version')}); this musicvae "
            f"reads format {CHECKPOINT_FORMAT}: use the version that trained it, or retrain"
        )
    hp = ckpt["hyper_parameters"]
    _fill_model_keys_added_since(hp.get("model"), hp.get("data"))
    return ckpt


def safe_load(path: Path, device: str = "cpu"):
    """torch.load with weights_only=True (and SAFE_GLOBALS); one UserError naming the file for a file that is
    not a PyTorch checkpoint, or one that holds pickled objects (code could run while they are read)."""
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if refused is None:
            raise UserError(f"{path} is not a PyTorch checkpoint (UnpicklingError): pass a musicvae .ckpt") from None
        raise UserError(
            f"{path} holds a pickled Python object ({refused[1]}) besides tensors and plain data: refused, since "
            "musicvae loads checkpoints with weights_only=True so that a file from elsewhere cannot run code; "
            "use a checkpoint written by musicvae's train()"
        ) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError) as e:
        raise UserError(f"{path} is not a PyTorch checkpoint ({type(e).__name__}): pass a musicvae .ckpt") from None


ATTRIBUTE_BINS_KEY = "musicvae_attribute_bins"  # model.attributes: the class edges (AttributeBins.to_dict())


def _fill_model_keys_added_since(model: dict | None, data: dict | None = None) -> None:
    """Model settings added after a checkpoint was written, set to what that version did, so that it
    loads, and resumes, as it trained (a model dict that lacks them describes the older behaviour)."""
    if not isinstance(model, dict):
        return
    model.setdefault("attn_dropout", model.get("dropout", 0.0))  # attention used `dropout` before attn_dropout existed
    model.setdefault("scaled_residual_init", False)
    model.setdefault("latent", "segment")  # one z per segment was all there was
    model.setdefault("attributes", [])
    model.setdefault("token_dropout", 0.0)
    model.setdefault("attribute_dim", 64)
    model.setdefault("attribute_classes", 8)
    model.setdefault("max_bars", int((data or {}).get("bars", VAEConfig.max_bars)))  # as configs/model says: data.bars
    model.setdefault("bias", True)  # the Transformer layers had biases before model.bias existed
    if isinstance(model.get("conditioning"), dict) and model["conditioning"].get("mode") == "cross_attention":
        model["conditioning"].setdefault("bar_view", "own")


def model_from_checkpoint(ckpt: dict, path: str | Path = "checkpoint") -> MusicVAE:
    """The MusicVAE a `read_checkpoint` dict describes, with its trained weights."""
    weights = {k[len(MODEL_PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(MODEL_PREFIX)}
    try:
        model = MusicVAE(VAEConfig.from_settings(ckpt["hyper_parameters"]["model"]))
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, KeyError) as e:
        raise UserError(f"{path} does not match this version's model ({str(e).splitlines()[0]})") from None
    return model


def check_resumable(ckpt: dict, hparams: dict, path: str | Path) -> None:
    """UserError when a new run's model, tokenizer or data settings (`hparams`) differ from the checkpoint's."""
    old = ckpt["hyper_parameters"]
    for key in ("model", "tokenizer", "data"):
        before, now = old.get(key) or {}, hparams.get(key) or {}
        if key == "model":  # run options (torch.compile) may change between a run and its resumption
            before, now = ({k: v for k, v in d.items() if k not in RUN_OPTIONS} for d in (before, now))
        if before != now:
            diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            raise UserError(
                f"ckpt_path={path} was trained with other {key} settings ({', '.join(diff[:5])} differ): "
                f"resume with the run's own config (its config.yaml), or start a new run"
            )
