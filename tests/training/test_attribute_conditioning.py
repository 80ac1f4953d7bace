"""Attribute-conditioned decoding (`model.attributes`): classes per bar joined to z, class edges in the
checkpoint, `sample.py mode=transfer rhythm=+2` / `rhythm=5`, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model_cases import C, tiny_vae
from musicvae.errors import UserError
from musicvae.generation.inference import input_classes, load_checkpoint
from musicvae.generation.modes import SampleRequest, sample
from musicvae.models.vae import MusicVAE, VAEConfig
from musicvae.tokens.attributes import AttributeReader

ROOT = Path(__file__).resolve().parents[2]


def test_classes_are_joined_to_z_and_change_the_decoding():
    model = tiny_vae({"mode": "in_attention"}, latent="bar")
    cfg = VAEConfig(**{**model.cfg.to_dict(), "attributes": ["rhythm", "polyphony"], "attribute_dim": 4})
    model = MusicVAE(cfg).eval()
    z = torch.randn(1, 2, C)
    joined = model.join_attributes(z, torch.tensor([[[1, 2], [3, 4]]]))
    assert joined.shape == (1, 2, C + 2 * 4) and torch.equal(joined[..., :C], z)
    tokens, bars = torch.tensor([[1, 4, 5, 4, 6]]), torch.tensor([[0, 0, 0, 1, 1]])
    with torch.no_grad():
        a = model.decode(tokens, z, bars=bars, attributes=torch.tensor([[[0, 0], [0, 0]]]))
        b = model.decode(tokens, z, bars=bars, attributes=torch.tensor([[[0, 0], [7, 0]]]))
    first_bar_1 = 3
    torch.testing.assert_close(a[:, :first_bar_1], b[:, :first_bar_1], rtol=0, atol=0)  # bar 0's classes alike
    assert (a[:, first_bar_1:] - b[:, first_bar_1:]).abs().max() > 1e-4  # bar 1's rhythm class differs
    with pytest.raises(ValueError, match="decodes with their classes"):
        model.decode(tokens, z, bars=bars)


def test_training_stores_the_class_edges_and_transfer_moves_rhythm(tiny_attr_run, tmp_path):
    loaded = load_checkpoint(tiny_attr_run["ckpt"])
    assert loaded.model.cfg.attributes == ["rhythm", "polyphony"] and loaded.attribute_bins is not None
    assert json.loads((tiny_attr_run["run_dir"] / "fidelity.json").read_text())["n_reconstructions"] == 2
    reader = AttributeReader(loaded.tokenizer)
    pieces = sorted(tiny_attr_run["midi"].glob("*.mid"))[:4]
    # the classes of the sparsest (1 onset) and densest (16 onsets) bars of the training pieces
    low, high = (int(loaded.attribute_bins.classes(np.array([[v, 1.0, 1.0, 60.0, 0.0]]))[0, 0]) for v in (1 / 32, 0.5))
    assert low < high
    onsets = {}
    for cls in (low, high):  # the same pieces' own z, every bar told rhythm class `cls`
        rhythm = []
        for piece in pieces:
            summary = sample(SampleRequest(ckpt=str(tiny_attr_run["ckpt"]), mode="transfer", input=str(piece),
                                           rhythm=cls, top_k=1, piano_roll=False, out_dir=str(tmp_path / f"{cls}{piece.stem}")))  # fmt: skip
            assert summary["results"][0]["malformed_tokens_dropped"] == 0
            ids = loaded.tokenizer.encode(str(tmp_path / f"{cls}{piece.stem}" / "transfer_000.mid"))
            rhythm.append(float(np.mean(reader.bars(np.asarray(_ids(ids)))[:, 0])))
        onsets[cls] = float(np.mean(rhythm))
    assert onsets[high] > onsets[low], onsets  # a higher rhythm class writes more onsets per bar


def _ids(encoded) -> list[int]:
    seqs = encoded if isinstance(encoded, list) else [encoded]
    return [i for s in seqs for i in s.ids]


def test_transfer_requests_and_errors(tiny_attr_run, tiny_bar_run, tmp_path):
    req = SampleRequest(ckpt="x", mode="transfer", input="a.mid", rhythm="+2", polyphony="-1")
    assert req.class_changes() == {"rhythm": (True, 2), "polyphony": (True, -1)}
    assert SampleRequest(ckpt="x", mode="transfer", input="a.mid", rhythm=5).class_changes() == {"rhythm": (False, 5)}
    with pytest.raises(UserError, match="out of range"):
        SampleRequest(ckpt="x", mode="transfer", input="a.mid", rhythm=9)
    with pytest.raises(UserError, match="class change"):
        SampleRequest(ckpt="x", mode="transfer", input="a.mid")
    piece = str(sorted(tiny_attr_run["midi"].glob("*.mid"))[0])
    with pytest.raises(UserError, match="without model.attributes"):
        sample(SampleRequest(ckpt=str(tiny_bar_run["ckpt"]), mode="transfer", input=piece, rhythm="+1", out_dir=str(tmp_path)))
    with pytest.raises(UserError, match="trained with attributes"):
        sample(SampleRequest(ckpt=str(tiny_attr_run["ckpt"]), mode="transfer", input=piece, note_density="+1",
                             out_dir=str(tmp_path)))  # fmt: skip


def test_script_keeps_the_sign_of_a_relative_class(tiny_attr_run, tmp_path):
    piece = str(sorted(tiny_attr_run["midi"].glob("*.mid"))[0])
    base = [sys.executable, "scripts/sample.py", f"ckpt={tiny_attr_run['ckpt']}", "mode=transfer", f"input={piece}",
            "piano_roll=false"]  # fmt: skip
    proc = subprocess.run([*base, "rhythm=+2", f"out_dir={tmp_path / 'a'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "a" / "samples.json").read_text())["settings"]["rhythm"] == "+2"
    loaded = load_checkpoint(tiny_attr_run["ckpt"])
    own = input_classes(loaded, piece=_ids(loaded.tokenizer.encode(piece)))
    assert own.shape[1] == 2 and (own >= 0).all() and (own < 8).all()
