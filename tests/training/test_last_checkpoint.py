"""last.ckpt is the run's last validated state, whether or not val/elbo improved there (resume and sample.py read
it). Lightning 2.6's own save_last refreshes it only where a best checkpoint is saved: shown here too, so the test
fails if the subclass stops mattering or stops working."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from musicvae.training.resume import BestAndLastCheckpoint


class Worsening(pl.LightningModule):
    """One parameter; a validation metric that rises with every validation (the first one is the best)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        return (self.w - batch[0].sum()) ** 2

    def validation_step(self, batch, batch_idx):
        self.log("val/m", float(self.global_step))  # worse (higher) at every validation

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path, checkpoint: ModelCheckpoint) -> dict:
    data = DataLoader(TensorDataset(torch.ones(64, 1)), batch_size=1)
    trainer = pl.Trainer(max_steps=6, val_check_interval=2, limit_val_batches=1, callbacks=[checkpoint], logger=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         accelerator="cpu")  # fmt: skip
    trainer.fit(Worsening(), data, data)
    return {
        "last": torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"],
        "best": checkpoint.best_model_path,
    }


def test_last_ckpt_holds_the_last_validation_even_when_it_is_not_the_best(tmp_path):
    ours = BestAndLastCheckpoint(dirpath=tmp_path, filename="best-{step}", monitor="val/m", mode="min", save_last=True)
    result = fit(tmp_path, ours)
    assert result["last"] == 6  # the run's last step
    assert result["best"].endswith("best-step=2.ckpt")  # the best stays the first validation


def test_lightnings_save_last_alone_leaves_last_ckpt_at_the_best_step(tmp_path):
    plain = ModelCheckpoint(dirpath=tmp_path, filename="best-{step}", monitor="val/m", mode="min", save_last=True)
    assert fit(tmp_path, plain)["last"] == 2  # why BestAndLastCheckpoint exists
