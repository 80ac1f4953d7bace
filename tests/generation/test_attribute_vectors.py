"""Attribute vectors of any checkpoint (scripts/attributes.py) and `sample.py mode=shift`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from musicvae.errors import UserError
from musicvae.generation.attribute_vectors import (
    AttributeVectors,
    VectorSettings,
    compute_attribute_vectors,
    quarter_difference,
    vectors_path,
)
from musicvae.generation.inference import load_checkpoint
from musicvae.generation.modes import SampleRequest, sample
from musicvae.tokens.attributes import ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]


def test_quarter_difference_is_top_minus_bottom_quarter_by_rank():
    z = torch.arange(16, dtype=torch.float32)[:, None].repeat(1, 2)  # row i holds i
    values = np.array([3.0] * 8 + [1.0] * 4 + [9.0] * 4)
    values[0] = np.nan  # left out: 15 rows, quarters of 3 by rank (ties in stable order)
    diff = quarter_difference(z, values)
    top = z[[13, 14, 15]].mean(0)  # 9.0s
    bottom = z[[8, 9, 10]].mean(0)  # 1.0s
    assert diff.shape == (2,) and torch.allclose(diff, top - bottom)
    with pytest.raises(UserError, match="too few"):
        quarter_difference(z[:5], values[:5])


@pytest.mark.parametrize("run", ["tiny_run", "tiny_bar_run"])
def test_vectors_of_a_checkpoint_save_load_and_shift_z(run, request, tmp_path):
    trained = request.getfixturevalue(run)
    loaded = load_checkpoint(trained["ckpt"])
    vectors = compute_attribute_vectors(loaded, VectorSettings(max_segments=200))
    assert vectors.names == ATTRIBUTES and vectors.vectors.shape == (len(ATTRIBUTES), loaded.model.cfg.latent_dim)
    assert torch.isfinite(vectors.vectors).all() and (vectors.vectors.norm(dim=1) > 0).all()
    assert vectors.latent == loaded.model.cfg.latent and vectors.n > 8
    path = tmp_path / "v.attributes.pt"
    vectors.save(path)
    again = AttributeVectors.load(path)
    assert torch.equal(again.vectors, vectors.vectors) and again.bins.to_dict() == vectors.bins.to_dict()

    vectors.save(vectors_path(trained["ckpt"]))
    piece = str(sorted(trained["midi"].glob("*.mid"))[1])

    def run_mode(mode, **kw):
        out = tmp_path / f"{mode}{kw.get('amount', '')}"
        sample(SampleRequest(ckpt=str(trained["ckpt"]), mode=mode, input=piece, out_dir=str(out), top_k=1,
                             piano_roll=False, **kw))  # fmt: skip
        return (out / f"{mode}_000.mid").read_bytes()

    assert run_mode("shift", attribute="note_density", amount=0.0) == run_mode("reconstruct")  # amount 0: no change
    shifted = sample(SampleRequest(ckpt=str(trained["ckpt"]), mode="shift", input=piece, attribute="note_density",
                                   amount=3.0, out_dir=str(tmp_path / "s"), piano_roll=False))  # fmt: skip
    plain = sample(SampleRequest(ckpt=str(trained["ckpt"]), mode="reconstruct", input=piece, out_dir=str(tmp_path / "r"),
                                 piano_roll=False))  # fmt: skip
    assert shifted["z_norms"] != plain["z_norms"]
    with pytest.raises(UserError, match="not one of"):
        sample(SampleRequest(ckpt=str(trained["ckpt"]), mode="shift", input=piece, attribute="loudness",
                             out_dir=str(tmp_path / "x")))  # fmt: skip


def test_shift_without_vectors_and_bad_requests_are_clear_errors(tiny_run, tmp_path):
    with pytest.raises(UserError, match="attribute="):
        SampleRequest(ckpt="x", mode="shift", input="a.mid")
    ckpt = tmp_path / "copy.ckpt"
    ckpt.write_bytes(Path(tiny_run["ckpt"]).read_bytes())
    piece = str(sorted(tiny_run["midi"].glob("*.mid"))[0])
    with pytest.raises(UserError, match="scripts/attributes.py"):
        sample(SampleRequest(ckpt=str(ckpt), mode="shift", input=piece, attribute="rhythm", out_dir=str(tmp_path)))


def test_attributes_script_writes_the_vectors_beside_the_checkpoint(tiny_run, tmp_path):
    ckpt = tmp_path / "copy.ckpt"
    ckpt.write_bytes(Path(tiny_run["ckpt"]).read_bytes())
    proc = subprocess.run([sys.executable, "scripts/attributes.py", f"ckpt={ckpt}", "max_segments=100"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "copy.attributes.pt").is_file() and "vector norms" in proc.stdout
    bad = subprocess.run([sys.executable, "scripts/attributes.py", f"ckpt={ckpt}", f"data_path={tmp_path / 'nope'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "nope" in bad.stderr


@pytest.mark.slow  # the script end to end again, on another corpus (the default run has the script's own test)
def test_attributes_script_takes_another_data_source(tiny_run, tmp_path):
    ckpt = tmp_path / "copy.ckpt"
    ckpt.write_bytes(Path(tiny_run["ckpt"]).read_bytes())
    run = lambda *args: subprocess.run([sys.executable, "scripts/attributes.py", f"ckpt={ckpt}", *args], cwd=ROOT,  # noqa: E731
                                       capture_output=True, text=True, timeout=300)  # fmt: skip
    proc = run("data=midi_dir", f"data.path={tiny_run['midi']}", f"paths.data_dir={tmp_path / 'data'}", "max_segments=50")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert any((tmp_path / "data" / "cache").iterdir())  # the data it was told, cached where it was told
    bad = run("data=nosuch")
    assert bad.returncode == 2 and "unknown data=nosuch" in bad.stderr and "Traceback" not in bad.stderr


def test_another_data_source_replaces_the_checkpoints_whole(compose_cfg, tmp_path):
    """data=midi_dir data_path=... on a checkpoint of a bundled corpus: the folder is read as it is, no corpus
    is exported into it (corpus None replaces the checkpoint's)."""
    from musicvae.generation.attribute_vectors import data_override

    data = compose_cfg("evaluate", ["ckpt=x", "data=midi_dir"]).data
    override = data_override(data, str(tmp_path))
    assert override["corpus"] is None and override["path"] == str(tmp_path) and override["name"] == "midi_dir"
    assert data_override(None, str(tmp_path)) == {"path": str(tmp_path)}  # a moved folder: only its path
    with pytest.raises(UserError, match="data_path="):
        data_override(data, None)
