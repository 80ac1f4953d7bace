"""`train(cfg)` end to end on a tiny synthetic MIDI folder, composed from the real configs."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import MissingConfigException

from musicvae.training.kl import KLConfig, beta_at
from musicvae.training.train import train

ROOT = Path(__file__).resolve().parents[2]
MODES = ["in_attention", "cross_attention", "embedding", "prefix", "none"]
VAL_COLUMNS = ["val/recon", "val/ppl", "val/kl", "val/rate", "val/distortion", "val/elbo", "val/au", "val/mi",
               "val/zgap", "val/recon_acc"]  # fmt: skip
TRAIN_COLUMNS = ["train/loss", "train/recon", "train/kl", "train/beta", "train/kl_fb"]


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def last_value(rows: list[dict], key: str) -> float:
    return [float(r[key]) for r in rows if r.get(key)][-1]


@pytest.mark.parametrize("mode", MODES)
def test_train_every_conditioning_writes_metrics_and_checkpoints(train_cfg, mode):
    result = train(train_cfg(f"model/conditioning={mode}"))
    run = result["run_dir"]
    rows = read_csv(run / "metrics.csv")
    for column in TRAIN_COLUMNS + VAL_COLUMNS:
        assert any(r.get(column) for r in rows), f"{column} never logged"
        assert all(math.isfinite(float(r[column])) for r in rows if r.get(column))
    assert result["global_step"] == 4
    assert Path(result["last_ckpt"]).is_file() and Path(result["best_ckpt"]).is_file()
    assert (run / "config.yaml").is_file()
    per_dim = [json.loads(line) for line in (run / "kl_per_dim.jsonl").read_text().splitlines()]
    assert len(per_dim) == 2 and len(per_dim[-1]["kl"]) == 8  # one record per validation, one value per dim
    assert 0 <= last_value(rows, "val/au") <= 8
    assert last_value(rows, "val/ppl") == pytest.approx(math.exp(last_value(rows, "val/recon")), rel=1e-4)
    # -ELBO = distortion + rate, each logged (the formula by hand: tests/training/test_validation.py)
    assert last_value(rows, "val/elbo") == pytest.approx(last_value(rows, "val/distortion") + last_value(rows, "val/kl"), rel=1e-5)
    assert last_value(rows, "val/rate") == last_value(rows, "val/kl")
    ckpt = torch.load(result["last_ckpt"], map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert hp["model"]["conditioning"]["mode"] == mode
    assert hp["tokenizer"] and hp["data"]["bars"] == 4
    fidelity = json.loads((run / "fidelity.json").read_text())
    assert fidelity["n_reconstructions"] == 2 and fidelity["n_samples"] == 2
    assert {"prior_000.mid", "reconstruct_000.mid", "input_000.mid", "prior_000.png"} <= {
        p.name for p in (run / "samples").iterdir()
    }


def test_none_mode_has_zero_zgap_and_in_attention_does_not(train_cfg):
    # The `none` decoder ignores z, so shuffling z across the batch changes nothing: zgap is exactly 0.
    rows = read_csv(train(train_cfg("model/conditioning=none"))["run_dir"] / "metrics.csv")
    assert last_value(rows, "val/zgap") == pytest.approx(0.0, abs=1e-6)
    rows = read_csv(train(train_cfg("model/conditioning=in_attention"))["run_dir"] / "metrics.csv")
    assert abs(last_value(rows, "val/zgap")) > 1e-6


def test_beta_logged_follows_the_schedule(train_cfg):
    cfg = train_cfg("kl=linear", "kl.warmup_steps=4", "kl.beta=0.5")
    rows = read_csv(train(cfg)["run_dir"] / "metrics.csv")
    logged = {int(r["step"]): float(r["train/beta"]) for r in rows if r.get("train/beta")}
    schedule = KLConfig(schedule="linear", beta=0.5, warmup_steps=4)
    assert logged and all(b == pytest.approx(beta_at(s, schedule)) for s, b in logged.items())


def test_resume_continues_step_count_and_schedule(train_cfg, tmp_path):
    first = train(train_cfg("kl=linear", "kl.warmup_steps=8", "trainer.max_steps=8"))
    # Stop early by training a second run to 4 steps, then resume it to 8.
    short = train(train_cfg("kl=linear", "kl.warmup_steps=8", "trainer.max_steps=4", f"output_dir={tmp_path / 'a'}"))
    assert short["global_step"] == 4
    resumed = train(
        train_cfg(
            "kl=linear", "kl.warmup_steps=8", "trainer.max_steps=8",
            f"ckpt_path={short['last_ckpt']}", f"output_dir={tmp_path / 'b'}",
        )
    )  # fmt: skip
    assert resumed["global_step"] == 8
    rows = read_csv(resumed["run_dir"] / "metrics.csv")
    steps = sorted({int(r["step"]) for r in rows if r.get("train/beta")})
    assert steps[0] >= 4  # the resumed run starts where the checkpoint stopped
    betas = {int(r["step"]): float(r["train/beta"]) for r in rows if r.get("train/beta")}
    assert all(b == pytest.approx(s / 8) for s, b in betas.items())  # β continues from the step
    # The whole run and the stopped-and-resumed run end at the same step with the same schedule.
    assert first["global_step"] == resumed["global_step"]


def test_same_seed_gives_identical_metrics(train_cfg, tmp_path):
    a = read_csv(train(train_cfg(f"output_dir={tmp_path / 'a'}"))["run_dir"] / "metrics.csv")
    b = read_csv(train(train_cfg(f"output_dir={tmp_path / 'b'}"))["run_dir"] / "metrics.csv")
    strip = [{k: v for k, v in r.items() if k != "train/lr"} for r in a]
    assert strip == [{k: v for k, v in r.items() if k != "train/lr"} for r in b]
    c = read_csv(train(train_cfg("seed=1", f"output_dir={tmp_path / 'c'}"))["run_dir"] / "metrics.csv")
    assert last_value(a, "train/loss") != last_value(c, "train/loss")


def test_unknown_conditioning_lists_the_choices(compose_cfg):
    with pytest.raises(MissingConfigException) as err:
        compose_cfg("train", ["model/conditioning=bogus"])
    assert "in_attention" in str(err.value) and "cross_attention" in str(err.value)


def test_invalid_option_is_one_clear_error(train_cfg):
    from musicvae.errors import UserError

    with pytest.raises(UserError, match="model.conditioning.position"):
        train(train_cfg("model.conditioning.position=sideways"))


def test_train_script_reports_a_missing_folder_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "scripts/train.py", "data=midi_dir", f"data.path={tmp_path / 'nope'}",
         f"output_dir={tmp_path / 'run'}", "trainer=debug"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(tmp_path / "nope") in proc.stderr


def test_wandb_logger_runs_offline(train_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    result = train(train_cfg("logger=wandb", "trainer.max_steps=2", "trainer.val_check_interval=2"))
    runs = list((result["run_dir"] / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert (runs[0] / f"run-{runs[0].name.rsplit('-', 1)[1]}.wandb").stat().st_size > 0  # the run's records
    assert (result["run_dir"] / "metrics.csv").is_file()  # CSV as always, besides wandb


def test_resume_with_another_model_is_one_clear_error(train_cfg, tmp_path):
    from musicvae.errors import UserError

    short = train(train_cfg("trainer.max_steps=2", f"output_dir={tmp_path / 'a'}"))
    with pytest.raises(UserError, match="other model settings.*d_model"):
        train(train_cfg("model.d_model=64", f"ckpt_path={short['last_ckpt']}", f"output_dir={tmp_path / 'b'}"))
    with pytest.raises(UserError, match="does not exist"):
        train(train_cfg(f"ckpt_path={tmp_path / 'nope.ckpt'}"))


def test_an_empty_validation_split_is_one_clear_error(train_cfg):
    from musicvae.errors import UserError

    with pytest.raises(UserError, match="data.val_fraction"):
        train(train_cfg("data.val_fraction=0.0"))


def test_a_dot_instead_of_a_slash_is_caught(configs_dir):
    from musicvae.config import check_group_choices
    from musicvae.errors import UserError

    with pytest.raises(UserError, match="model/conditioning=cross_attention"):
        check_group_choices(configs_dir, ["model.conditioning=cross_attention"])
    check_group_choices(configs_dir, ["model.conditioning.position=pre_norm", "model/conditioning=none"])  # fine


def test_token_dropout_trains_and_needs_a_mask_token(train_cfg):
    from musicvae.errors import UserError

    result = train(train_cfg("model.token_dropout=0.3"))
    assert result["global_step"] == 4 and math.isfinite(result["metrics"]["val/distortion"])
    with pytest.raises(UserError, match=r"model.token_dropout=0.3 .*MASK"):
        train(train_cfg("model.token_dropout=0.3", "tokenizer.special_tokens=[PAD,BOS,EOS]"))
