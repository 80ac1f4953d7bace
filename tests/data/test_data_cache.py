"""The segment cache: bad files, reuse and rebuild, stable split, interrupted builds."""

import json
import multiprocessing as mp
import os
import time

import pretty_midi
import pytest

from musicvae.data import build_tokenizer
from musicvae.data import cache as cache_module
from musicvae.data.cache import build_cache, cache_path, load_pieces, load_split, prepare_cache, read_manifest
from musicvae.data.config import DataConfig
from musicvae.errors import UserError


def prepare(cfg):
    return prepare_cache(DataConfig.from_cfg(cfg.data), build_tokenizer(cfg.tokenizer), progress=False)


def write_bad_files(folder, make_piece):
    """One file per skip reason: {file name: reason}."""
    good = make_piece(folder / "good.mid", bars=8).read_bytes()
    (folder / "empty.mid").write_bytes(b"")
    (folder / "text.mid").write_text("MIDI? no, a shopping list")
    (folder / "truncated.mid").write_bytes(good[: len(good) // 2])
    header = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60"
    body = b"\x00\xf4\x01\x02\x00\xff\x2f\x00"  # 0xF4 is no MIDI status byte
    (folder / "corrupt.mid").write_bytes(header + b"MTrk" + len(body).to_bytes(4, "big") + body)
    silent = pretty_midi.PrettyMIDI()
    silent.instruments.append(pretty_midi.Instrument(program=0))
    silent.write(str(folder / "silent.mid"))
    make_piece(folder / "drums.mid", bars=8, programs=(), drums=True)
    make_piece(folder / "short.mid", bars=2)
    return {
        "empty.mid": "empty",
        "text.mid": "not_midi",
        "truncated.mid": "truncated",
        "corrupt.mid": "corrupt",
        "silent.mid": "no_notes",
        "drums.mid": "drums_only",
        "short.mid": "too_short",
    }


def test_bad_files_are_skipped_with_their_reason(data_cfg, midi_folder, make_piece):
    expected = write_bad_files(midi_folder, make_piece)
    manifest = prepare(data_cfg()).manifest
    assert {s["file"]: s["reason"] for s in manifest["skipped"]} == expected
    assert manifest["skipped_by_reason"] == {reason: 1 for reason in expected.values()}
    assert manifest["files"] == {"found": 13 + len(expected), "tokenized": 13, "skipped": len(expected)}


def test_folder_with_no_usable_file(data_cfg, midi_folder, make_piece):
    for path in midi_folder.rglob("*.mid"):
        path.unlink()
    write_bad_files(midi_folder, make_piece)
    (midi_folder / "good.mid").unlink()
    with pytest.raises(UserError, match=r"no usable MIDI file under .*midi .*1 empty"):
        prepare(data_cfg())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.path=/nonexistent/folder", "data folder /nonexistent/folder does not exist"),
        ("data.path=null", "data.path is not set"),
        ("data.corpus=nosuch", "unknown corpus 'nosuch': the bundled corpora are bach, folk"),
        ("data.merge_tracks=false", "tokenizer=remi_programs"),
    ],
)
def test_user_errors(data_cfg, override, message):
    with pytest.raises(UserError, match=message):
        prepare(data_cfg(override))


def test_empty_folder(data_cfg, tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(UserError, match="no .mid/.midi files under"):
        prepare(data_cfg(f"data.path={tmp_path / 'nothing'}"))


def test_cache_is_reused_then_rebuilt(data_cfg, midi_folder, add_pieces, monkeypatch):
    first = prepare(data_cfg())
    assert first.built and (first.path / "manifest.json").is_file()

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized again")

    with monkeypatch.context() as m:
        m.setattr(cache_module, "tokenize_files", no_tokenizing)
        again = prepare(
            data_cfg("data.batch_size=2", "data.transpose=0", "data.loader_workers=1", "data.workers=2")
        )
        assert not again.built and again.path == first.path and again.manifest == first.manifest

    rebuilt = prepare(data_cfg("data.bars=2"))  # a setting that changes the tokens: a new cache folder
    assert rebuilt.built and rebuilt.path != first.path
    assert prepare(data_cfg("tokenizer.num_velocities=16")).path not in (first.path, rebuilt.path)

    add_pieces(midi_folder, count=2, first_seed=100)  # new files under the same settings: rebuilt in place
    grown = prepare(data_cfg())
    assert grown.built and grown.path == first.path and grown.manifest["files"]["found"] == 14


def test_split_is_stable_when_files_are_added_and_never_leaks(data_cfg, midi_folder, add_pieces):
    cfg = data_cfg("data.val_fraction=0.25", "data.test_fraction=0.25")
    before = load_pieces(prepare(cfg).path)
    add_pieces(midi_folder, count=12, first_seed=200)
    prepared = prepare(cfg)
    after = load_pieces(prepared.path)
    for split, pieces in before.items():
        assert set(pieces) <= set(after[split])  # no existing piece moved
    assert sum(len(p) for p in after.values()) == len(set().union(*map(set, after.values()))) == 24
    assert all(after[s] for s in after)  # each split got pieces
    for split, pieces in after.items():  # every segment belongs to a piece of its own split
        arrays = load_split(prepared.path, split)
        assert set(arrays.pieces.tolist()) == set(range(len(pieces)))
        assert prepared.manifest["splits"][split]["segments"] == len(arrays)


def test_interrupted_build_leaves_no_cache(data_cfg, monkeypatch):
    cfg = data_cfg()
    settings, tok = DataConfig.from_cfg(cfg.data), build_tokenizer(cfg.tokenizer)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(cache_module, "_write_split", interrupted)
        with pytest.raises(KeyboardInterrupt):
            build_cache(settings, tok, progress=False)
    assert read_manifest(cache_path(settings, tok)) is None
    prepared = prepare(cfg)
    assert prepared.built and read_manifest(prepared.path) == prepared.manifest


def test_manifest_and_arrays_agree(data_cfg):
    prepared = prepare(data_cfg())
    manifest = json.loads((prepared.path / "manifest.json").read_text())
    assert manifest["tokenizer"] == {
        "class": "REMI",
        "vocab_size": len(build_tokenizer(data_cfg().tokenizer)),
    }
    for split, counts in manifest["splits"].items():
        arrays = load_split(prepared.path, split)
        assert arrays.tokens.dtype.name == "int16" and counts["tokens"] == len(arrays.tokens)
        assert len(arrays.bars) == len(arrays.pieces) == counts["segments"]


def test_parallel_tokenizing_gives_the_same_cache(data_cfg, tmp_path):
    one = prepare(data_cfg())
    two = prepare(data_cfg("data.workers=2", f"data.cache_dir={tmp_path / 'cache2'}"))
    assert two.built and one.path.name == two.path.name
    for split in ("train", "val", "test"):
        a, b = load_split(one.path, split), load_split(two.path, split)
        assert (a.tokens == b.tokens).all() and (a.offsets == b.offsets).all()


def crash_or_hang_on(name: str, fault: str):
    """A segment_file that kills its worker process (or hangs) on the file called `name`."""
    real = cache_module.segment_file

    def segment_file(path, *args, **kwargs):
        if path.name == name:
            if fault == "crash":
                os._exit(3)
            time.sleep(600)
        return real(path, *args, **kwargs)

    return segment_file


def windows_by_piece(prepared) -> dict[str, list[tuple[int, list[int]]]]:
    """{piece path: [(start bar, window ids), ...]} over all splits of a cache."""
    out = {}
    pieces = load_pieces(prepared.path)
    for split, names in pieces.items():
        arrays = load_split(prepared.path, split)
        for i in range(len(arrays)):
            window = arrays.tokens[arrays.offsets[i] : arrays.offsets[i + 1]].tolist()
            out.setdefault(names[arrays.pieces[i]], []).append((int(arrays.bars[i]), window))
    return out


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="workers must be forked to see the fault")
@pytest.mark.parametrize(("fault", "reason"), [("crash", "worker_crash"), ("hang", "timeout")])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_that_crashes_or_hangs_its_worker_is_skipped(data_cfg, tmp_path, monkeypatch, fault, reason, workers):
    clean = prepare(data_cfg(f"data.cache_dir={tmp_path / 'clean'}"))
    monkeypatch.setattr(cache_module, "segment_file", crash_or_hang_on("piece005.mid", fault))  # before the fork
    start = time.monotonic()
    faulty = prepare(data_cfg(f"data.workers={workers}", "data.file_timeout_s=2"))
    assert time.monotonic() - start < 90  # the hung file was given up on after 2 s, not after 600
    assert [(s["file"], s["reason"]) for s in faulty.manifest["skipped"]] == [("piece005.mid", reason)]
    assert faulty.manifest["files"] == {"found": 12, "tokenized": 11, "skipped": 1}
    expected = windows_by_piece(clean)
    del expected["piece005.mid"]
    assert windows_by_piece(faulty) == expected  # every other file's windows, as without the fault
