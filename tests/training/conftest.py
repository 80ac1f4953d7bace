"""Fixtures of the training tests."""

import pytest


@pytest.fixture
def train_cfg(compose_cfg, midi_folder, tmp_path):
    """train_cfg(*overrides) -> the real train config shrunk to seconds on `midi_folder`."""

    def _cfg(*overrides: str):
        base = [
            "data=midi_dir", f"data.path={midi_folder}", f"paths.data_dir={tmp_path / 'data'}",
            "data.workers=1", "data.batch_size=4", "data.max_tokens=128", "data.val_fraction=0.25",
            "trainer=debug", "trainer.max_steps=4", "trainer.val_check_interval=2",
            "model.d_model=32", "model.layers=1", "model.heads=2", "model.latent_dim=8", "model.ff_mult=2",
            f"output_dir={tmp_path / 'run'}", "optim.warmup_steps=1",
            "eval.fidelity.n_reconstructions=2", "eval.fidelity.n_samples=2", "eval.fidelity.n_files=1",
            "eval.fidelity.interpolation_steps=0", "audio=false",  # tests/generation/test_audio.py and tiny_bar_run cover those
        ]  # fmt: skip
        return compose_cfg("train", [*base, *overrides])

    return _cfg
