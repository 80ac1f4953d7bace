"""The segment cache: bad files, reuse and rebuild, stable split, interrupted builds."""

import json
import multiprocessing as mp
import os
import time

import numpy as np
import pretty_midi
import pytest
import torch

from musicvae.data import cache as cache_module
from musicvae.data.cache import build_cache, cache_path, prepare_cache, read_manifest
from musicvae.data.cache_store import load_pieces, load_split
from musicvae.data.config import DataConfig
from musicvae.errors import UserError
from musicvae.tokens import build_tokenizer


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
    assert manifest["files"] == {"found": 13 + len(expected), "tokenized": 13, "skipped": len(expected), "duplicates": 0}


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
        m.setattr(cache_module.PieceStore, "assemble", interrupted)
        with pytest.raises(KeyboardInterrupt):
            build_cache(settings, tok, progress=False)
    assert read_manifest(cache_path(settings, tok)) is None
    assert list(cache_path(settings, tok).parent.iterdir()) == []  # the temporary build is gone too
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
        assert arrays.tokens.dtype.name == "int16" and counts["stored_tokens"] == len(arrays.tokens)
        assert counts["tokens"] == arrays.lengths.sum()
        if counts["segments"]:  # windows overlap (hop 2 of 4): the stored tokens are fewer
            assert counts["tokens"] > counts["stored_tokens"]
        assert len(arrays.bars) == len(arrays.pieces) == len(arrays.ends) == counts["segments"]
        assert (0 <= arrays.starts).all() and (arrays.starts < arrays.ends).all() and arrays.ends.max() <= len(arrays.tokens)


def test_parallel_tokenizing_gives_the_same_cache(data_cfg, tmp_path):
    one = prepare(data_cfg())
    two = prepare(data_cfg("data.workers=2", f"data.cache_dir={tmp_path / 'cache2'}"))
    assert two.built and one.path.name == two.path.name
    for split in ("train", "val", "test"):  # the same bytes, though pieces arrive in another order
        a, b = load_split(one.path, split), load_split(two.path, split)
        for name in ("tokens", "starts", "ends", "pieces", "bars"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert load_pieces(one.path) == load_pieces(two.path)


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
            window = arrays.window(i).tolist()
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
    assert faulty.manifest["files"] == {"found": 12, "tokenized": 11, "skipped": 1, "duplicates": 0}
    expected = windows_by_piece(clean)
    del expected["piece005.mid"]
    assert windows_by_piece(faulty) == expected  # every other file's windows, as without the fault


def write_piece_with_a_rest(path, rest_bars=(4, 8)):
    """12 bars of quarter notes in 4/4 with bars rest_bars[0]..rest_bars[1]-1 silent (empty windows)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    track = pretty_midi.Instrument(program=0)
    for beat in range(48):
        if not rest_bars[0] * 4 <= beat < rest_bars[1] * 4:
            track.notes.append(pretty_midi.Note(80, 60 + beat % 12, beat * 0.5, beat * 0.5 + 0.5))
    pm.instruments.append(track)
    pm.write(str(path))


def reference_windows(path, tokenizer, settings) -> list[tuple[int, list[int]]]:
    """The windows of a file as cache format 1 stored them: each cut from the stream and copied."""
    from musicvae.data.segments import cap_segment
    from musicvae.tokens.tokenize import encode_score, load_score, prepare_score, token_table

    ids = encode_score(tokenizer, prepare_score(load_score(path), settings.merge_tracks, settings.keep_drums))
    table = token_table(tokenizer)
    bounds = np.append(np.flatnonzero(table.bar[ids]), len(ids))
    out = []
    for bar in range(0, len(bounds) - 1 - settings.bars + 1, settings.hop_bars):
        window = ids[bounds[bar] : bounds[bar + settings.bars]].copy()
        if table.note[window].any():
            window, _ = cap_segment(window, table, settings.max_tokens, settings.overlong)
            if window is not None:
                out.append((bar, window.tolist()))
    return out


@pytest.mark.parametrize(
    "overrides",
    [
        ["data=bach"],  # the bundled settings: 4 bars every 2, up to 512 tokens
        ["data=bach_2bar"],  # 2 bars every bar, up to 256
        ["data=bach", "data.max_tokens=40"],  # truncated windows: gaps between the stored stretches
        ["data=bach_2bar", "data.max_tokens=40", "data.overlong=drop"],
    ],
)
def test_cached_windows_are_the_cut_windows_bit_for_bit(compose_cfg, midi_folder, tmp_path, overrides):
    from musicvae.data.datamodule import SegmentDataset

    write_piece_with_a_rest(midi_folder / "rest.mid")
    cfg = compose_cfg(
        "prepare_data",
        [*overrides, "data.corpus=null", f"data.path={midi_folder}", f"data.cache_dir={tmp_path / 'c'}", "data.workers=2"],
    )
    settings, tokenizer = DataConfig.from_cfg(cfg.data), build_tokenizer(cfg.tokenizer)
    prepared = prepare_cache(settings, tokenizer, progress=False)
    cached = {}
    for split, names in load_pieces(prepared.path).items():
        arrays = load_split(prepared.path, split)
        dataset = SegmentDataset(arrays)  # what training reads
        for i in range(len(dataset)):
            item = dataset[i]
            assert item.dtype == torch.long and item.ndim == 1 and len(item) == dataset.lengths[i]
            cached.setdefault(names[arrays.pieces[i]], []).append((int(arrays.bars[i]), item.tolist()))
    expected = {}
    for path in sorted(midi_folder.rglob("*.mid")):
        windows = reference_windows(path, tokenizer, settings)
        if windows:
            expected[path.relative_to(midi_folder).as_posix()] = windows
    assert cached == expected and expected
    skipped = {s["file"] for s in prepared.manifest["skipped"]}
    assert skipped | set(expected) == {p.relative_to(midi_folder).as_posix() for p in midi_folder.rglob("*.mid")}
    splits = prepared.manifest["splits"]
    stored, read = sum(s["stored_tokens"] for s in splits.values()), sum(s["tokens"] for s in splits.values())
    if settings.hop_bars < settings.bars and settings.max_tokens > 100:
        assert stored < 0.75 * read  # overlapping windows share their tokens on disk
    assert stored <= read


def test_store_piece_keeps_each_covered_token_once():
    from musicvae.data.cache_store import store_piece
    from musicvae.data.segments import FileSegments

    piece = FileSegments(ids=np.arange(100) * 3, spans=[(0, 40), (20, 60), (60, 65), (70, 80), (75, 78)], start_bars=[0, 1, 2, 4, 5])
    stored = store_piece(piece, np.int16)
    assert stored.tokens.dtype == np.int16
    assert stored.tokens.tolist() == (np.r_[0:65, 70:80] * 3).tolist()  # 60..64 touches: one stretch; 65..69 a gap
    for k, (start, end) in enumerate(piece.spans):
        assert stored.tokens[stored.starts[k] : stored.ends[k]].tolist() == piece.ids[start:end].tolist()
    assert stored.bars.tolist() == [0, 1, 2, 4, 5]


def test_copies_of_a_piece_land_in_one_split(data_cfg, midi_folder):
    from symusic import Score, Tempo

    copy = Score(str(midi_folder / "piece001.mid")).resample(960)  # other resolution, tempo, names
    copy.tempos.append(Tempo(0, qpm=93.0))
    for track in copy.tracks:
        track.name, track.program = "fiddle", 110
    (midi_folder / "tunebook").mkdir()
    copy.dump_midi(str(midi_folder / "tunebook" / "0042.mid"))
    for fractions in (("0.3", "0.3"), ("0.45", "0.45"), ("0.0", "0.6")):
        prepared = prepare(data_cfg(f"data.val_fraction={fractions[0]}", f"data.test_fraction={fractions[1]}"))
        split = {rel: s for s, rels in load_pieces(prepared.path).items() for rel in rels}
        assert split["tunebook/0042.mid"] == split["piece001.mid"], fractions
        assert prepared.manifest["files"]["duplicates"] == 1


def test_abandoned_builds_are_removed_only_when_surely_abandoned(tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "x-123"
    host, me = cache_module._HOST, os.getpid()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    two_days_ago = time.time() - 2 * 86400
    builds = {  # name: removed?
        f".tmp-x-123-{host}-{dead.pid}": True,  # this host, its process is gone
        f".old-x-123-{host}-{dead.pid}": True,
        f".tmp-x-123-{host}-{me}": True,  # an earlier build of this very process
        f".tmp-x-123-{host}-{alive.pid}": False,  # still building here
        f".tmp-x-123-other-node.cluster-{dead.pid}": False,  # a pid of another host says nothing here
        f".tmp-x-123-{dead.pid}": False,  # no host (an older version): judged by age only
        ".tmp-x-123-other-node-17": True,  # untouched for two days: abandoned wherever it ran
        ".tmp-x-123-busy-node-18": False,  # an old folder, but a file in it was written just now
        f".tmp-x-1234-{host}-{dead.pid}": False,  # another cache's build
    }
    try:
        for name in builds:
            (tmp_path / name).mkdir()
            (tmp_path / name / "pieces.part").write_bytes(b"\0")
        for name in (".tmp-x-123-other-node-17", ".tmp-x-123-busy-node-18"):
            os.utime(tmp_path / name, (two_days_ago, two_days_ago))
        os.utime(tmp_path / ".tmp-x-123-other-node-17" / "pieces.part", (two_days_ago, two_days_ago))
        cache_module._remove_abandoned_builds(folder)
    finally:
        alive.kill()
        alive.wait()
    assert {name: not (tmp_path / name).exists() for name in builds} == builds
    assert cache_module._build_name("tmp", folder).name == f".tmp-x-123-{host}-{me}"
