"""Anytime evaluation: the constant and wsd learning-rate schedules beside cosine, and the weights' moving
average (Lightning's EMAWeightAveraging, callbacks=[default,ema]) that validation, checkpoints and the end of
a run read. The average is checked against one computed by hand on a one-parameter model whose every step is
known; then the project's preset builds it with its decay, and a real run writes and resumes it."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EMAWeightAveraging, WeightAveraging

from musicvae.errors import UserError
from musicvae.training.optim import OptimConfig, build_optimizer, lr_factor
from musicvae.training.train import build_callbacks, train

# A run with the moving average whose LR and β do not depend on trainer.max_steps (the default cyclical β
# does: a 4-step run cut from a 6-step one would be another run, and a resumed one could not match it).
EMA_RUN = ("callbacks=[default,ema]", "optim.schedule=constant", "kl=constant", "trainer.val_check_interval=2")  # fmt: skip


# --- schedules ------------------------------------------------------------------------------------------


def test_constant_schedule_is_the_warmup_ramp_then_one_forever():
    assert [lr_factor(s, 4, 10, 0.1, "constant") for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(lr_factor(s, 4, 10, 0.1, "constant") == 1.0 for s in range(4, 25))  # past total too
    assert lr_factor(0, 0, 10, 0.1, "constant") == 1.0  # no warm-up: 1 from the start


def test_wsd_is_flat_until_the_cooldown_then_one_minus_sqrt_down_to_min_ratio():
    def f(step, warmup=0):
        return lr_factor(step, warmup, 100, 0.1, "wsd", cooldown=0.2)  # the cooldown: steps 80..100

    assert f(0, warmup=10) == pytest.approx(0.1)  # the warm-up comes first
    assert f(10, warmup=10) == 1.0
    assert all(f(s) == 1.0 for s in range(0, 81))  # stable, and still 1 where the cooldown starts
    assert f(90) == pytest.approx(0.1 + 0.9 * (1 - math.sqrt(0.5)))  # halfway: ~0.364, not the linear 0.55
    assert f(95) == pytest.approx(0.1 + 0.9 * (1 - math.sqrt(0.75)))
    assert f(100) == pytest.approx(0.1) and f(130) == pytest.approx(0.1)  # the end, and flat after it
    values = [f(s) for s in range(80, 101)]  # strictly decreasing over the cooldown:
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    all_cooldown = lr_factor(50, 0, 100, 0.0, "wsd", cooldown=1.0)
    assert all_cooldown == pytest.approx(1 - math.sqrt(0.5))
    cfg = OptimConfig(schedule="wsd", warmup_steps=0, min_lr_ratio=0.1, cooldown=0.2)
    assert cfg.factor(90, 100) == pytest.approx(f(90))  # the config passes its cooldown through


def test_cosine_is_unchanged():
    def f(step):
        return lr_factor(step, 10, 110, 0.1)  # the default schedule: cosine

    assert f(0) == pytest.approx(0.1) and f(9) == 1.0  # warm-up (step + 1) / warmup
    assert f(10) == pytest.approx(1.0)  # the peak, where the decay starts
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the decay: cos(pi/2) = 0
    assert f(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


@pytest.mark.parametrize("schedule", ["constant", "wsd", "cosine"])
def test_the_optimizer_follows_the_schedule(schedule):
    cfg = OptimConfig(lr=2e-3, warmup_steps=2, schedule=schedule, min_lr_ratio=0.2, cooldown=0.5)
    opt, sched = build_optimizer(torch.nn.Linear(3, 3), cfg, fused=False, total_steps=10)
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()  # no gradients: a no-op that keeps LambdaLR's order check quiet
        sched.step()
    assert seen == pytest.approx([2e-3 * cfg.factor(s, 10) for s in range(12)])
    if schedule == "constant":
        assert seen[2:] == pytest.approx([2e-3] * 10)
    elif schedule == "wsd":  # cooldown over steps 5..10 (the last half)
        assert seen[2:6] == pytest.approx([2e-3] * 4) and seen[10] == pytest.approx(2e-3 * 0.2)


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ({"schedule": "nosuch"}, "optim.schedule"),
        ({"lr": 0.0}, "optim.lr"),
        ({"lr": -1e-3}, "optim.lr"),
        ({"cooldown": 0.0}, "optim.cooldown"),
        ({"cooldown": 1.5}, "optim.cooldown"),
        ({"cooldown": -0.2}, "optim.cooldown"),
        ({"min_lr_ratio": -0.1}, "optim.min_lr_ratio"),
        ({"min_lr_ratio": 1.1}, "optim.min_lr_ratio"),
    ],
)  # fmt: skip
def test_bad_optim_values_are_one_user_error_naming_the_key(bad, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        OptimConfig(**bad)


def test_the_edges_of_the_ranges_are_allowed():
    assert OptimConfig(cooldown=1.0, min_lr_ratio=0.0).cooldown == 1.0
    assert OptimConfig(min_lr_ratio=1.0, schedule="wsd").min_lr_ratio == 1.0


def test_composed_configs_read_as_optim_configs(compose_cfg):
    default = OptimConfig(**compose_cfg("train", []).optim)
    assert default.schedule == "cosine" and isinstance(default.betas, tuple)
    demo = OptimConfig(**compose_cfg("train", ["experiment=demo_size"]).optim)
    assert demo.schedule == "constant" and demo.lr == pytest.approx(1e-3)


# --- EMA on a model whose every step is known ----------------------------------------------------------

LR, G = 0.1, 1.0  # SGD without momentum on loss = -G * w: w_t = t * LR * G after t steps


class Scalar(pl.LightningModule):
    """One parameter w (0 at first) that SGD moves by LR * G each step; records what each step and each
    validation sees."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.trained_on: list[float] = []  # w at the start of each training step
        self.validated: list[tuple[int, float]] = []  # (global step, w) at each validation

    def training_step(self, batch, batch_idx):
        self.trained_on.append(self.w.item())
        return -G * self.w

    def validation_step(self, batch, batch_idx):
        self.validated.append((self.trainer.global_step, self.w.item()))
        self.log("val/w", self.w)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR, momentum=0.0)


def hand_ema(decay: float, steps: int) -> list[float]:
    """[EMA after step 1, ..., after step `steps`]: the first update copies w_1, then d * avg + (1 - d) * w_t."""
    avg, out = None, []
    for t in range(1, steps + 1):
        w = t * LR * G
        avg = w if avg is None else decay * avg + (1 - decay) * w
        out.append(avg)
    return out


class SaveAt(pl.Callback):
    """trainer.save_checkpoint(path) after optimizer step `step` (listed after the EMA: it has updated)."""

    def __init__(self, step: int, path):
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)


def test_validation_reads_the_hand_computed_ema_and_training_the_raw_weights(tmp_path):
    decay, steps = 0.75, 6  # not 0.5: d and 1 - d swapped would pass too
    ema = hand_ema(decay, steps)
    module = Scalar()
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=steps, val_check_interval=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[EMAWeightAveraging(decay=decay), SaveAt(3, tmp_path / "step3.ckpt")],
    )  # fmt: skip
    batches, val = (torch.utils.data.DataLoader(torch.zeros(n, 1), batch_size=1) for n in (steps, 1))
    trainer.fit(module, train_dataloaders=batches, val_dataloaders=val)
    assert trainer.global_step == steps

    # validation after steps 2, 4, 6 saw the average, which lags the raw weights (w_t = t * LR * G)
    assert [s for s, _ in module.validated] == [2, 4, 6]
    for step, seen in module.validated:
        assert seen == pytest.approx(ema[step - 1], rel=1e-6)
        assert seen != pytest.approx(step * LR * G, rel=1e-3)
    assert module.validated[0][1] == pytest.approx(0.125)  # 0.75 * 0.1 + 0.25 * 0.2
    # every training step, those right after a validation included, started from the raw weights
    assert module.trained_on == pytest.approx([t * LR * G for t in range(steps)], rel=1e-6)
    # after fit the model holds the average, not w_6 = 0.6
    assert module.w.item() == pytest.approx(ema[-1], rel=1e-6) and module.w.item() < 0.4

    ckpt = torch.load(tmp_path / "step3.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3
    assert ckpt["state_dict"]["w"].item() == pytest.approx(ema[2], rel=1e-6)  # 0.16875
    assert ckpt["current_model_state"]["w"].item() == pytest.approx(3 * LR * G, rel=1e-6)
    assert int(ckpt["averaging_state"]["n_averaged"]) == 3


# --- the project's preset and a real run ---------------------------------------------------------------


def test_the_ema_preset_builds_the_callback_with_its_decay(compose_cfg, tmp_path):
    cfg = compose_cfg("train", ["experiment=demo_size"])
    assert cfg.callbacks.ema.decay == 0.998
    (ema,) = [c for c in build_callbacks(cfg, tmp_path) if isinstance(c, WeightAveraging)]
    assert type(ema) is EMAWeightAveraging
    # its decay, read through the callback's public hooks: two updates, then the end of training copies the
    # average in, 0.998 * w_1 + 0.002 * w_2
    module = Scalar()
    ema.setup(SimpleNamespace(), module, "fit")
    for step, w in ((1, 1.0), (2, 2.0)):
        module.w.data.fill_(w)
        ema.on_train_batch_end(SimpleNamespace(global_step=step), module, None, None, step - 1)
    ema.on_train_end(SimpleNamespace(), module)
    assert module.w.item() == pytest.approx(0.998 * 1.0 + 0.002 * 2.0, rel=1e-6)

    default = build_callbacks(compose_cfg("train", []), tmp_path)
    assert default and not any(isinstance(c, WeightAveraging) for c in default)


def test_a_run_with_ema_checkpoints_both_weights_and_resumes_the_average(train_cfg, tmp_path):
    first = train(train_cfg(*EMA_RUN, "trainer.max_steps=4"))
    assert first["global_step"] == 4
    ckpt = torch.load(first["last_ckpt"], map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4 and int(ckpt["averaging_state"]["n_averaged"]) == 4
    average, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert average.keys() == raw.keys()
    assert any(not torch.equal(average[k], raw[k]) for k in raw)  # the average is not the raw weights

    second = train(train_cfg(*EMA_RUN, "trainer.max_steps=6", f"ckpt_path={first['last_ckpt']}"))
    assert second["global_step"] == 6 and second["run_dir"] == first["run_dir"]
    resumed = torch.load(second["last_ckpt"], map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 6
    assert int(resumed["averaging_state"]["n_averaged"]) == 6  # continued from 4, not restarted at 0
    assert any(not torch.equal(resumed["state_dict"][k], resumed["current_model_state"][k]) for k in raw)

    # the resumed run went on from the raw weights and the average both: it ends where an uninterrupted one does
    whole = train(train_cfg(*EMA_RUN, "trainer.max_steps=6", f"output_dir={tmp_path / 'whole'}"))
    ref = torch.load(whole["last_ckpt"], map_location="cpu", weights_only=True)
    assert int(ref["averaging_state"]["n_averaged"]) == 6
    for key in ("state_dict", "current_model_state"):
        for name, tensor in ref[key].items():
            torch.testing.assert_close(resumed[key][name], tensor, rtol=1e-5, atol=1e-6, msg=f"{key}: {name}")
