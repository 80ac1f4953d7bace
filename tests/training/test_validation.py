"""Validation metrics on the fixed val sample: independent of batch order and composition, z-gap
partners from other pieces, the ELBO as its formula says, exactly 0 z-gap for a decoder that ignores z."""

from __future__ import annotations

import math
from functools import partial
from types import SimpleNamespace

import numpy as np
import pretty_midi
import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from musicvae.data import MidiDataModule
from musicvae.data.eval_sample import EvalSampleDataset, collate_with_positions
from musicvae.tokens.tokenize import token_table, tokenizer_to_dict
from musicvae.training.kl import kl_per_dim
from musicvae.training.module import VAEModule

VAL_KEYS = ("val/recon", "val/ppl", "val/kl", "val/rate", "val/distortion", "val/elbo", "val/au", "val/mi",
            "val/zgap", "val/recon_acc")  # fmt: skip


def one_pitch_pieces(folder, count=16, bars=8):
    """Piece k repeats pitch 48 + k on every beat: its pitch token names the piece."""
    for k in range(count):
        pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
        pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
        track = pretty_midi.Instrument(program=0)
        track.notes += [pretty_midi.Note(80, 48 + k, b * 0.5, (b + 1) * 0.5) for b in range(bars * 4)]
        pm.instruments.append(track)
        folder.mkdir(parents=True, exist_ok=True)
        pm.write(str(folder / f"piece{k:02d}.mid"))
    return folder


@pytest.fixture
def datamodule(compose_cfg, tmp_path):
    """A datamodule over 16 one-pitch pieces, half of them in val, 2-bar windows every bar."""

    def _dm(*overrides: str) -> MidiDataModule:
        cfg = compose_cfg("prepare_data", [
            "data=midi_dir", f"data.path={one_pitch_pieces(tmp_path / 'midi')}", f"paths.data_dir={tmp_path / 'data'}",
            "data.workers=1", "data.batch_size=4", "data.bars=2", "data.hop_bars=1", "data.val_fraction=0.5",
            "data.test_fraction=0.1", "data.transpose=0", *overrides,
        ])  # fmt: skip
        dm = MidiDataModule(cfg.data, cfg.tokenizer)
        dm.prepare_data()
        dm.setup()
        return dm

    return _dm


class ShuffledValData(MidiDataModule):
    """The same val sample, presented in a random order and in batches of another size."""

    order_seed, batch_size = 0, 3

    def val_dataloader(self):
        dataset = EvalSampleDataset(self.datasets["val"], self.val_sample)
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(self.order_seed)).tolist()
        return DataLoader(dataset, batch_size=self.batch_size, sampler=order, collate_fn=partial(collate_with_positions, collate=self.collate))


# One latent per segment; one per bar; one per bar with attribute-conditioned decoding (classes per bar).
LATENTS = {"segment": {}, "bar": {"latent": "bar"}, "bar+attributes": {"latent": "bar", "attributes": ["rhythm", "polyphony"]}}


def tiny_module(dm: MidiDataModule, mode: str = "in_attention", **model_options) -> VAEModule:
    torch.manual_seed(0)
    model = dict(vocab_size=dm.vocab_size, max_len=dm.max_len, d_model=32, heads=2, encoder_layers=1,
                 decoder_layers=1, latent_dim=8, ff_mult=2, dropout=0.0, conditioning={"mode": mode},
                 max_bars=dm.settings.bars, **model_options)  # fmt: skip
    optim = dict(lr=1e-3, weight_decay=0.0, betas=[0.9, 0.98], warmup_steps=0, min_lr_ratio=1.0)
    module = VAEModule(model=model, kl={"schedule": "constant", "beta": 0.1}, optim=optim,
                       tokenizer=tokenizer_to_dict(dm.tokenizer))  # fmt: skip
    if model_options.get("attributes"):  # as train() does at setup: class edges from the training split
        arrays = dm.datasets["train"].arrays
        module.fit_attribute_bins(arrays.window(i) for i in range(len(arrays)))
    return module


def validate(module: VAEModule, dm: MidiDataModule) -> dict[str, float]:
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=dm.settings.cache_dir,  # kl_per_dim.jsonl lands in tmp, not in the repo
    )  # fmt: skip
    (metrics,) = trainer.validate(module, datamodule=dm, verbose=False)
    return metrics


@pytest.mark.parametrize("latent", LATENTS)
def test_val_metrics_do_not_depend_on_batch_order_or_size(datamodule, latent):
    dm = datamodule()
    assert len({int(p) for p in dm.val_sample.pieces}) >= 3
    module = tiny_module(dm, **LATENTS[latent])
    reference = validate(module, dm)
    assert set(VAL_KEYS) <= set(reference)
    for seed, batch_size in ((0, 3), (1, 5), (2, 1)):
        shuffled = ShuffledValData(dm.settings, dm.tokenizer_params)
        shuffled.order_seed, shuffled.batch_size = seed, batch_size
        shuffled.prepare_data()
        shuffled.setup()
        got = validate(module, shuffled)
        for key in VAL_KEYS:
            assert got[key] == pytest.approx(reference[key], rel=1e-4, abs=1e-6), key


class PieceIdentityVAE(nn.Module):
    """z is a one-hot of the segment's pitch (its piece); the decoder raises that pitch's logit."""

    def __init__(self, pitch: np.ndarray, vocab_size: int):
        super().__init__()
        self.is_pitch = torch.as_tensor(pitch >= 0)
        self.vocab_size = vocab_size
        self.dummy = nn.Parameter(torch.zeros(()))  # Lightning wants a parameter

    per_bar = False
    cfg = SimpleNamespace(attributes=[], latent="segment")

    def encode(self, tokens, mask, bars=None):
        present = torch.zeros(len(tokens), self.vocab_size).scatter_(1, tokens, 1.0) * self.is_pitch  # (B, V)
        return present * 3.0, torch.full_like(present, -8.0)  # mu, logvar: a near-certain posterior

    def posterior(self, tokens, mask, bars=None):
        return (*self.encode(tokens, mask, bars), None)  # one latent per segment: no latent mask

    @staticmethod
    def reparameterize(mu, logvar, eps):
        return mu + eps * torch.exp(0.5 * logvar)

    def decode(self, tokens, z, bars=None, attributes=None):
        return (2.0 * z).unsqueeze(1).expand(-1, tokens.shape[1], -1) + self.dummy  # (B, T, V)


def test_zgap_sees_z_that_only_encodes_the_piece_in_any_order(datamodule):
    dm = datamodule()
    module = tiny_module(dm)
    module.model = PieceIdentityVAE(token_table(dm.tokenizer).pitch, dm.vocab_size)
    in_order = validate(module, dm)["val/zgap"]
    shuffled = ShuffledValData(dm.settings, dm.tokenizer_params)
    shuffled.prepare_data()
    shuffled.setup()
    # Partners from the same piece would carry the same z and give a gap of exactly 0.
    assert in_order > 0.05
    assert validate(module, shuffled)["val/zgap"] == pytest.approx(in_order, rel=1e-6)


def test_a_decoder_that_ignores_z_has_zgap_exactly_zero(datamodule):
    dm = datamodule()
    metrics = validate(tiny_module(dm, "none"), dm)
    assert metrics["val/zgap"] == 0.0


def test_elbo_is_sampled_nll_plus_kl_by_hand(datamodule):
    dm = datamodule("data.val_segments=10")
    module = tiny_module(dm)
    metrics = validate(module, dm)
    sample = dm.val_sample
    assert len(sample) == 10
    module.eval()
    nll_sum, kl_sum = 0.0, 0.0
    with torch.no_grad():
        for position in range(len(sample)):  # one segment at a time: no padding at all
            tokens, mask, _ = dm.collate([dm.datasets["val"][int(sample.indices[position])]])
            mu, logvar = module.model.encode(tokens, mask)
            z = mu + module._fixed.eps[position] * torch.exp(0.5 * logvar)  # the sample's fixed noise
            logits = module.model.decode(tokens[:, :-1], z)
            nll_sum += torch.nn.functional.cross_entropy(logits[0], tokens[0, 1:], reduction="sum").item()
            kl_sum += kl_per_dim(mu, logvar).sum().item()
    assert metrics["val/distortion"] == pytest.approx(nll_sum / 10, rel=1e-4)
    assert metrics["val/kl"] == pytest.approx(kl_sum / 10, rel=1e-4)
    assert metrics["val/elbo"] == pytest.approx((nll_sum + kl_sum) / 10, rel=1e-4)
    assert math.isfinite(metrics["val/mi"]) and metrics["val/mi"] <= math.log(10) + 1e-6


@pytest.fixture
def file_system_sharing():
    """The module's tensors reach ddp_spawn's ranks by pickling; passed as file descriptors (torch's default)
    they fail on this VM's kernel ("unable to resize file ... Invalid argument"): share them through files."""
    previous = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy("file_system")
    yield
    torch.multiprocessing.set_sharing_strategy(previous)


@pytest.mark.slow
@pytest.mark.parametrize("latent", LATENTS)
def test_two_processes_validate_like_one(datamodule, latent, file_system_sharing):
    """DDP (2 CPU processes, gloo): each rank takes its share of the sample, none twice, sums reduced."""
    dm = datamodule("data.val_segments=25")  # odd: a padding sampler would count one segment twice
    assert len(dm.val_sample) == 25
    module = tiny_module(dm, **LATENTS[latent])
    one = validate(module, dm)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=dm.settings.cache_dir,
    )  # fmt: skip
    (two,) = trainer.validate(module, datamodule=dm, verbose=False)
    for key in VAL_KEYS:
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key
