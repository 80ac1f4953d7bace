"""bf16 mixed precision and the speed options of the training module: fused AdamW (with gradient
clipping under bf16), torch.compile as a run option that checkpoints and resumption ignore."""

import csv
import math

import pytest
import torch

from musicvae.errors import UserError
from musicvae.models.checkpoint import check_resumable, model_from_checkpoint, read_checkpoint
from musicvae.training.module import VAEModule
from musicvae.training.optim import use_fused_adamw
from musicvae.training.train import train

MODEL = dict(vocab_size=40, max_len=16, d_model=32, heads=2, encoder_layers=1, decoder_layers=1, latent_dim=4)
KL = {"schedule": "constant", "beta": 1.0}
OPTIM = {"lr": 1e-3, "weight_decay": 0.0, "betas": [0.9, 0.98], "warmup_steps": 1, "min_lr_ratio": 0.1}


def _last(run_dir, key: str) -> float:
    with open(run_dir / "metrics.csv") as f:
        return [float(r[key]) for r in csv.DictReader(f) if r.get(key)][-1]


def test_bf16_mixed_run_on_cpu_with_fused_adamw_and_clipping(train_cfg):
    # Lightning refuses clipping with a fused optimizer under mixed precision; bf16 has no scaler, so
    # VAEModule clips itself: without that override this run raises before its first step.
    result = train(train_cfg("trainer.precision=bf16-mixed", "optim.fused=true", "trainer.gradient_clip_val=0.5"))
    assert result["global_step"] == 4
    for key in ("train/loss", "train/kl", "val/recon", "val/kl", "val/mi"):
        assert math.isfinite(_last(result["run_dir"], key)), key
    model = model_from_checkpoint(read_checkpoint(result["last_ckpt"]))
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())


def test_fused_adamw_rule():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_fused_adamw("auto", cuda, "bf16-mixed") and use_fused_adamw("auto", cuda, "32-true")
    assert not use_fused_adamw("auto", cuda, "16-mixed")  # its in-step unscaling rules out clipping
    assert not use_fused_adamw("auto", cpu, "32-true")
    assert use_fused_adamw(True, cpu, "32-true") and not use_fused_adamw(False, cuda, "bf16-mixed")
    with pytest.raises(UserError, match="optim.fused='yes'"):
        use_fused_adamw("yes", cuda, "32-true")


def test_compile_is_a_run_option_that_checkpoints_ignore(tmp_path):
    plain = VAEModule(model=MODEL, kl=KL, optim=OPTIM)
    compiled = VAEModule(model=MODEL | {"compile": True}, kl=KL, optim=OPTIM)
    # compiled in place: the same parameter names, so a checkpoint loads with or without compile
    assert list(plain.state_dict()) == list(compiled.state_dict())
    ckpt = {"hyper_parameters": {"model": MODEL | {"compile": True}}, "state_dict": compiled.state_dict()}
    assert model_from_checkpoint(ckpt).cfg == plain.model.cfg
    check_resumable(ckpt, {"model": MODEL | {"compile": False}}, "last.ckpt")  # compile may change on resume
    with pytest.raises(UserError, match="d_model"):
        check_resumable(ckpt, {"model": MODEL | {"d_model": 64}}, "last.ckpt")
