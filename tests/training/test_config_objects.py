"""Loggers, callbacks and the trainer are built from config (`_target_`), as lightning-hydra-template users expect."""

from __future__ import annotations

import csv

import pytest
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from musicvae.errors import UserError
from musicvae.training.faults import NonFiniteGuard
from musicvae.training.resume import ResumingCSVLogger
from musicvae.training.train import build_callbacks, build_loggers, build_trainer, train


def test_logger_tensorboard_writes_events_beside_the_csv(train_cfg):
    result = train(train_cfg("logger=tensorboard", "trainer.max_steps=2", "trainer.val_check_interval=2"))
    events = list((result["run_dir"] / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    with (result["run_dir"] / "metrics.csv").open() as f:
        assert any(row.get("val/elbo") for row in csv.DictReader(f))


def test_logger_none_and_a_logger_added_from_the_command_line(compose_cfg, tmp_path):
    assert build_loggers(compose_cfg("train", ["logger=none"]), tmp_path) == []
    cfg = compose_cfg("train", ["logger=none", "+logger.tb._target_=pytorch_lightning.loggers.TensorBoardLogger"])
    (tb,) = build_loggers(cfg, tmp_path)
    assert isinstance(tb, TensorBoardLogger) and tb.save_dir == str(tmp_path)  # the run dir, given at run time
    (csv_logger,) = build_loggers(compose_cfg("train", []), tmp_path, resume_step=7)
    assert isinstance(csv_logger, ResumingCSVLogger) and csv_logger.resume_step == 7


def test_callback_presets_and_one_added_from_the_command_line(compose_cfg, tmp_path):
    cfg = compose_cfg("train", [
        "callbacks=[default,periodic_checkpoint,lr_monitor,early_stopping]", "callbacks.non_finite.on_nan=skip",
        "callbacks.periodic_checkpoint.every_n_train_steps=7",
        "+callbacks.best_recon._target_=pytorch_lightning.callbacks.ModelCheckpoint", "+callbacks.best_recon.monitor=val/recon",
    ])  # fmt: skip
    built = build_callbacks(cfg, tmp_path)
    kinds = [type(c) for c in built]
    assert kinds == [NonFiniteGuard, ModelCheckpoint, LearningRateMonitor, EarlyStopping, ModelCheckpoint]
    guard, periodic, _, stop, best = built
    assert guard.on_nan == "skip" and stop.monitor == "val/elbo" and best.monitor == "val/recon"
    assert periodic._every_n_train_steps == 7 and periodic.dirpath == str(tmp_path / "checkpoints")
    assert build_callbacks(compose_cfg("train", ["callbacks=none"]), tmp_path) == []


def test_a_node_without_target_or_an_unknown_class_is_one_user_error(compose_cfg, tmp_path):
    with pytest.raises(UserError, match=r"callbacks.mine needs a _target_"):
        build_callbacks(compose_cfg("train", ["+callbacks.mine.patience=3"]), tmp_path)
    with pytest.raises(UserError, match=r"logger.mine._target_='nowhere.Logger' names no class"):
        build_loggers(compose_cfg("train", ["+logger.mine._target_=nowhere.Logger"]), tmp_path)


@pytest.mark.parametrize(("old", "instead"), [
    ("+trainer.on_nan=skip", "callbacks.non_finite.on_nan"),
    ("+trainer.checkpoint_every_n_steps=4", "periodic_checkpoint"),
    ("+trainer.prepare_data_per_node=true", "data.prepare_data_per_node"),
])  # fmt: skip
def test_old_trainer_keys_say_where_they_went(compose_cfg, tmp_path, old, instead):
    with pytest.raises(UserError, match=instead):
        build_trainer(compose_cfg("train", [old]), tmp_path, [], [])


def test_trainer_is_built_from_its_target(compose_cfg, tmp_path):
    trainer = build_trainer(compose_cfg("train", ["trainer=debug", "trainer.max_steps=3"]), tmp_path, [], [])
    assert trainer.max_steps == 3 and trainer.default_root_dir == str(tmp_path)


def test_the_command_line_takes_lists_of_presets_and_names_moved_keys(configs_dir):
    from musicvae.config import check_group_choices

    check_group_choices(configs_dir, ["callbacks=[default,lr_monitor]", "logger=tensorboard"])  # fine
    with pytest.raises(UserError, match=r"unknown callbacks=lr_monitr: choose one of default, early_stopping"):
        check_group_choices(configs_dir, ["callbacks=[default,lr_monitr]"])
    with pytest.raises(UserError, match=r"trainer.on_nan has moved: callbacks.non_finite.on_nan=skip"):
        check_group_choices(configs_dir, ["trainer.on_nan=skip"])
