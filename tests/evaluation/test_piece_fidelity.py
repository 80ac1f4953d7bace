"""Whole-piece fidelity (musicvae.evaluation.pieces): what `sample.py mode=reconstruct` makes, scored bar by bar.

The measure's ends: a decoder that gives back the piece whose latents it is handed scores 1 on every measure
and clears the shuffled-z floor; one that ignores z scores exactly its floor. Then the real thing: the
end-of-run evaluation of a tiny run, and `scripts/evaluate.py fidelity=true` with a decoder without z."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import musicvae.evaluation.pieces as pieces_module
from musicvae.evaluation.pieces import PieceFidelityConfig, evaluate_pieces
from musicvae.generation.inference import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bar_pieces(tiny_bar_run):
    return load_checkpoint(tiny_bar_run["ckpt"]), sorted(tiny_bar_run["midi"].glob("*.mid"))[:5]


def test_a_decoder_that_reads_z_exactly_scores_one_and_clears_the_floor(bar_pieces, monkeypatch):
    loaded, paths = bar_pieces
    by_first_latent = {}  # a perfect decoder: z identifies its piece

    def exact(loaded, piece, z, *args, **kwargs):
        return by_first_latent[tuple(z[0].tolist())]

    real_encode = pieces_module.encode_piece

    def encode(*args, **kwargs):
        piece = real_encode(*args, **kwargs)
        by_first_latent[tuple(piece.mu[0].tolist())] = piece.ids
        return piece

    monkeypatch.setattr(pieces_module, "encode_piece", encode)
    monkeypatch.setattr(pieces_module, "decode_piece", exact)
    result = evaluate_pieces(loaded, paths, PieceFidelityConfig())
    s = result["summary"]
    assert s["n_pieces"] == 5 and result["skipped"] == []
    for key in ("chroma", "groove", "metre"):
        assert s[key]["mean"] == pytest.approx(1.0)
    assert s["shuffled_chroma"]["mean"] < 0.9  # another piece's notes: the floor
    assert s["chroma_over_shuffled"]["lo"] > 0  # resolved above it, piece by piece
    assert s["bar_count_kept"] == 1.0 and s["note_ratio"]["mean"] == pytest.approx(1.0)


def test_a_decoder_that_ignores_z_scores_its_floor(bar_pieces, monkeypatch):
    loaded, paths = bar_pieces
    fixed = pieces_module.encode_piece(loaded, paths[0], 8, pieces_module.token_rules(loaded.tokenizer)).ids
    monkeypatch.setattr(pieces_module, "decode_piece", lambda *args, **kwargs: list(fixed))
    s = evaluate_pieces(loaded, paths, PieceFidelityConfig())["summary"]
    for key in ("chroma", "groove"):
        assert s[key]["mean"] == pytest.approx(s[f"shuffled_{key}"]["mean"])
        assert s[f"{key}_over_shuffled"]["mean"] == pytest.approx(0.0)
    assert s["chroma"]["mean"] < 0.9


def test_a_file_that_cannot_be_read_is_skipped_and_counted(bar_pieces, tmp_path):
    loaded, paths = bar_pieces
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"not a midi file")
    result = evaluate_pieces(loaded, [bad, *paths[:2]], PieceFidelityConfig(shuffled=False))
    assert result["skipped"] == ["broken.mid"] and result["summary"]["n_pieces"] == 2


def test_training_ends_with_whole_piece_fidelity(tiny_bar_run):
    run_dir = tiny_bar_run["run_dir"]
    fidelity = json.loads((run_dir / "fidelity.json").read_text())
    detail = json.loads((run_dir / "pieces.json").read_text())
    assert fidelity["n_pieces"] == len(detail["pieces"]) >= 1  # at most 3: the test split's pieces
    floors = ("piece_chroma_shuffled",) if fidelity["n_pieces"] > 1 else ()  # the floor needs another piece
    for key in ("piece_chroma", "piece_groove", "piece_metre", *floors):
        assert 0.0 <= fidelity[key] <= 1.0 + 1e-9, key
    assert fidelity["piece_metre"] == 1.0 and fidelity["piece_bar_count_kept"] == 1.0  # the skeleton, kept
    assert fidelity["chroma_sim"] is not None  # the 2-bar segment measure stays beside it


def test_evaluate_script_writes_both_floors(tiny_bar_run, tiny_run, tmp_path):
    run = lambda *extra: subprocess.run(  # noqa: E731
        [sys.executable, "scripts/evaluate.py", f"ckpt={tiny_bar_run['ckpt']}", "fidelity=true", "pieces.n_pieces=2",
         "split=train", f"out_dir={tmp_path}", *extra], cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    proc = run(f"floor_ckpt={tiny_run['ckpt']}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name, ckpt in (("pieces.json", tiny_bar_run["ckpt"]), ("pieces_floor.json", tiny_run["ckpt"])):
        result = json.loads((tmp_path / name).read_text())
        summary = result["summary"]
        assert result["checkpoint"] == str(ckpt)
        assert summary["n_pieces"] == 2 and "shuffled_chroma" in summary and "lo" in summary["chroma"]
    assert "## The floor" in (tmp_path / "pieces.md").read_text()
    missing = run(f"floor_ckpt={tmp_path / 'nosuch.ckpt'}")
    assert missing.returncode != 0 and "nosuch.ckpt" in missing.stderr and "Traceback" not in missing.stderr


def test_the_report_reads_a_re_evaluated_runs_pieces(tmp_path):
    from musicvae.evaluation.pieces import summarize
    from musicvae.report.runs import with_whole_pieces

    rows = [{"piece": f"p{i}", "chroma": c, "groove": 0.9, "metre": 1.0, "bars": 8, "bars_out": 8, "note_ratio": 1.5,
             "shuffled_chroma": 0.3, "shuffled_groove": 0.8, "shuffled_metre": 1.0} for i, c in enumerate((0.6, 0.8))]  # fmt: skip
    (tmp_path / "pieces.json").write_text(json.dumps({"summary": summarize(rows), "pieces": rows, "skipped": []}))
    merged = with_whole_pieces({"chroma_sim": 0.5, "piece_chroma": math.nan}, tmp_path / "pieces.json")
    assert merged["chroma_sim"] == 0.5 and merged["piece_chroma"] == pytest.approx(0.7)
    assert merged["piece_chroma_shuffled"] == pytest.approx(0.3) and merged["n_pieces"] == 2
    assert with_whole_pieces({"piece_chroma": 0.1}, tmp_path / "pieces.json") == {"piece_chroma": 0.1}  # its own first
    (tmp_path / "pieces.json").write_text("{broken")
    assert with_whole_pieces(None, tmp_path / "pieces.json") is None
