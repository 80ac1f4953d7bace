"""A model with one latent per bar (`model.latent=bar`) trained end to end, then every sampling mode:
16 bars from a model trained on 4-bar segments, whole-piece reconstruction, bar edits, bar-wise
interpolation; under the grammar mask every token decodes (0 dropped) and the bar counts are exact."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from musicvae.errors import UserError
from musicvae.generation.inference import load_checkpoint, piece_bar_latents, token_rules
from musicvae.generation.modes import SampleRequest, edit_z, sample


def pieces(run: dict) -> list:
    return sorted(run["midi"].glob("*.mid"))


def piece_bars(run: dict, path) -> int:
    loaded = load_checkpoint(run["ckpt"])
    mu, _ = piece_bar_latents(loaded, str(path), 8, token_rules(loaded.tokenizer))
    return len(mu)


def test_training_logs_every_collapse_metric_per_bar(tiny_bar_run):
    rows = list(csv.DictReader(open(tiny_bar_run["run_dir"] / "metrics.csv")))
    last = [r for r in rows if r.get("val/kl")][-1]
    for key in ("val/kl", "val/mi", "val/au", "val/zgap", "val/recon", "val/distortion"):
        assert math.isfinite(float(last[key])), key
    assert float(last["val/kl"]) > 0
    fidelity = json.loads((tiny_bar_run["run_dir"] / "fidelity.json").read_text())
    assert fidelity["n_reconstructions"] == 4 and fidelity["chroma_sim"] is not None


def test_prior_gives_sixteen_bars_from_a_four_bar_model(tiny_bar_run, tmp_path):
    assert load_checkpoint(tiny_bar_run["ckpt"]).window_bars == 4
    summary = sample(SampleRequest(ckpt=str(tiny_bar_run["ckpt"]), mode="prior", bars=16, n=2, out_dir=str(tmp_path),
                                   top_p=0.9, piano_roll=False))  # fmt: skip
    for r in summary["results"]:
        assert r["bars"] == 16 and r["malformed_tokens_dropped"] == 0 and r["notes"] > 0
    assert len(summary["z_norms"]) == 2


def test_reconstruct_decodes_every_bar_of_the_piece(tiny_bar_run, tmp_path):
    piece = max(pieces(tiny_bar_run), key=lambda p: piece_bars(tiny_bar_run, p))  # 12 bars: 3 windows of a 4-bar model
    summary = sample(SampleRequest(ckpt=str(tiny_bar_run["ckpt"]), mode="reconstruct", input=str(piece),
                                   out_dir=str(tmp_path), top_k=1, piano_roll=False))  # fmt: skip
    (result,) = summary["results"]
    assert result["bars"] == piece_bars(tiny_bar_run, piece) == 12
    assert result["malformed_tokens_dropped"] == 0 and result["notes"] > 0


def test_edit_swaps_the_chosen_bars_latents_and_keeps_the_rest(tiny_bar_run, tmp_path):
    a, b = pieces(tiny_bar_run)[5], pieces(tiny_bar_run)[6]
    loaded = load_checkpoint(tiny_bar_run["ckpt"])
    rules = token_rules(loaded.tokenizer)
    z_a, _ = piece_bar_latents(loaded, str(a), 8, rules)
    z_b, _ = piece_bar_latents(loaded, str(b), 8, rules)
    edited = edit_z(loaded, str(a), str(b), (2, 3), 8, rules)[0]
    assert torch.equal(edited[1:3], z_b[1:3])
    assert torch.equal(edited[0], z_a[0]) and torch.equal(edited[3:], z_a[3:])
    summary = sample(SampleRequest(ckpt=str(tiny_bar_run["ckpt"]), mode="edit", input=str(a), source=str(b),
                                   edit_bars="2-3", out_dir=str(tmp_path), piano_roll=False))  # fmt: skip
    assert summary["results"][0]["bars"] == len(z_a) and summary["results"][0]["malformed_tokens_dropped"] == 0
    with pytest.raises(UserError, match="has 6 bars"):  # piece 0 holds 6 bars
        edit_z(loaded, str(a), str(pieces(tiny_bar_run)[0]), (5, 7), 8, rules)


def test_interpolation_moves_bar_by_bar(tiny_bar_run, tmp_path):
    a, b = pieces(tiny_bar_run)[1], pieces(tiny_bar_run)[2]
    summary = sample(SampleRequest(ckpt=str(tiny_bar_run["ckpt"]), mode="interpolate", input=str(a), input2=str(b),
                                   steps=3, out_dir=str(tmp_path), piano_roll=False))  # fmt: skip
    assert [r["bars"] for r in summary["results"]] == [4, 4, 4]  # a 4-bar window of each end, per bar
    assert all(r["malformed_tokens_dropped"] == 0 for r in summary["results"])
    # its ends: each input's encoded window, and that window reconstructed bar by bar from its bar means
    assert [r["file"] for r in summary["ends"]] == ["input_a.mid", "recon_a.mid", "recon_b.mid", "input_b.mid"]
    for r in summary["ends"]:
        assert r["bars"] == 4 and r["malformed_tokens_dropped"] == 0 and r["notes"] > 0
        assert (tmp_path / r["file"]).is_file()
    greedy = sample(SampleRequest(ckpt=str(tiny_bar_run["ckpt"]), mode="interpolate", input=str(a), input2=str(b),
                                  steps=3, top_k=1, out_dir=str(tmp_path / "greedy")))  # fmt: skip
    assert (tmp_path / "greedy" / greedy["grid"]).stat().st_size > 1000
    midi = {name: (tmp_path / "greedy" / name).read_bytes() for name in ("recon_a.mid", "recon_b.mid",
                                                                         "interpolate_000.mid", "interpolate_002.mid")}  # fmt: skip
    assert midi["recon_a.mid"] == midi["interpolate_000.mid"]  # z = mu of A's bars, where the path starts
    assert midi["recon_b.mid"] == midi["interpolate_002.mid"]


def test_bad_edit_requests_are_clear_errors(tiny_run, tmp_path):
    with pytest.raises(UserError, match="source="):
        SampleRequest(ckpt="x", mode="edit", input="a.mid", edit_bars="5-8")
    with pytest.raises(UserError, match="edit_bars=5-8"):
        SampleRequest(ckpt="x", mode="edit", input="a.mid", source="b.mid", edit_bars="five")
    with pytest.raises(UserError, match="first <= last"):
        SampleRequest(ckpt="x", mode="edit", input="a.mid", source="b.mid", edit_bars="8-5")
    assert SampleRequest(ckpt="x", mode="edit", input="a.mid", source="b.mid", edit_bars=5).bar_range() == (5, 5)
    with pytest.raises(UserError, match="edit_bars="):  # the range is edit's alone
        SampleRequest(ckpt="x", mode="prior", edit_bars="5-8")
    with pytest.raises(UserError, match="edit_bars=5-8"):  # and bars is prior's count alone
        SampleRequest(ckpt="x", mode="prior", bars="5-8")
    piece = str(pieces(tiny_run)[0])
    with pytest.raises(UserError, match="model.latent=bar"):  # a segment model has no bar latents
        sample(SampleRequest(ckpt=str(tiny_run["ckpt"]), mode="edit", input=piece, source=piece, edit_bars="1-2",
                             out_dir=str(tmp_path)))  # fmt: skip
    with pytest.raises(UserError, match="model.latent=bar"):
        sample(SampleRequest(ckpt=str(tiny_run["ckpt"]), mode="prior", bars=16, out_dir=str(tmp_path)))


def test_the_old_edit_range_key_is_one_clear_error(compose_cfg):
    """`mode=edit bars=5-8` (the range's key before edit_bars) composes as before and stops with one line
    naming the key to use instead."""
    cfg = compose_cfg("sample", ["ckpt=x", "mode=edit", "input=a.mid", "source=b.mid", "bars=5-8"])
    with pytest.raises(UserError, match=r"^bars='5-8' is mode=prior's number of bars \(mode=edit takes its range as edit_bars=5-8\)$"):
        SampleRequest(**OmegaConf.to_container(cfg, resolve=True))
    cfg = compose_cfg("sample", ["ckpt=x", "mode=edit", "input=a.mid", "source=b.mid", "edit_bars=5-8"])
    assert SampleRequest(**OmegaConf.to_container(cfg, resolve=True)).bar_range() == (5, 8)
