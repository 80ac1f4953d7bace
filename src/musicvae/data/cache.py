"""The segment cache: tokenize a MIDI folder once, in parallel, and keep the result on disk.

Layout of `<data.cache_dir>/<data.name>-<hash>/` (hash: data + tokenizer settings that change the
tokens, see `config_hash`):

    manifest.json            written last: config hash, counts, per-split segments/tokens, skipped files
    tokenizer.json           `tokenizer_to_dict(tokenizer)`: the tokenizer that made the ids
    pieces.json              {split: [file path relative to the data folder, ...]}
    <split>.tokens.npy       int16 (int32 for vocabularies over 32767): all segments of a split, flat
    <split>.offsets.npy      int64[n+1]: segment i is tokens[offsets[i]:offsets[i+1]]
    <split>.pieces.npy       int32[n]: index of the segment's piece in pieces.json[split]
    <split>.bars.npy         int32[n]: the bar the segment starts on

Files are tokenized in worker processes (`musicvae.data.parallel`): a file that crashes its worker
(`worker_crash`) or is still tokenizing after `data.file_timeout_s` (`timeout`) is skipped and listed
like a bad file, and the build goes on with a fresh worker.

The cache is built in a temporary folder and renamed into place, so an interrupted build never
leaves a folder that loads as complete. The manifest also records a fingerprint of the source files
(paths, sizes, mtimes): files added, removed or changed in the folder rebuild the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
from miditok import MusicTokenizer

from musicvae.data.config import DataConfig
from musicvae.data.corpus import ExportReport, export_corpus
from musicvae.data.parallel import parallel_map, track_progress
from musicvae.data.segments import SPLITS, FileSegments, check_compatible, segment_file, split_of
from musicvae.data.tokenize import SkipFile, tokenizer_from_dict, tokenizer_to_dict
from musicvae.errors import UserError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
MIDI_SUFFIXES = (".mid", ".midi")


@dataclass(frozen=True)
class PreparedCache:
    path: Path
    manifest: dict
    built: bool  # False: loaded as it was
    seconds: float  # to build or to load
    export: ExportReport | None = None  # the bundled corpus export, when data.corpus is set


@dataclass(frozen=True)
class SplitArrays:
    """One split's segments: segment i is tokens[offsets[i]:offsets[i+1]] (piece/bar: where from)."""

    tokens: np.ndarray
    offsets: np.ndarray
    pieces: np.ndarray
    bars: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1


# ---------------------------------------------------------------------------------------------
# Finding the files and naming the cache


def find_midi_files(root: Path, limit: int | None = None) -> list[str]:
    """Paths (relative, posix) of the .mid/.midi files under `root`, sorted; the first `limit`."""
    files = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix.lower() in MIDI_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    return files[:limit]


def source_fingerprint(root: Path, files: list[str]) -> str:
    """A hash of the files' paths, sizes and modification times."""
    digest = hashlib.sha1()
    for rel in files:
        stat = (root / rel).stat()
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def config_hash(settings: DataConfig, tokenizer: MusicTokenizer) -> str:
    """12 hex digits over everything that changes the tokens (not batch size, transposition, workers)."""
    key = {
        "format": CACHE_FORMAT,
        "miditok": version("miditok"),
        "data": settings.cache_key(),
        "tokenizer": tokenizer_to_dict(tokenizer)["config"],
        "tokenization": type(tokenizer).__name__,
    }
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def cache_path(settings: DataConfig, tokenizer: MusicTokenizer) -> Path:
    return Path(settings.cache_dir) / f"{settings.name}-{config_hash(settings, tokenizer)}"


def read_manifest(path: Path) -> dict | None:
    """The manifest of a complete cache folder, or None."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("format") == CACHE_FORMAT else None


def list_source_files(settings: DataConfig) -> tuple[Path, list[str]]:
    """The data folder and its MIDI files; UserError when the folder is missing or holds none."""
    root = settings.source_dir
    if not root.is_dir():
        raise UserError(
            f"data folder {root} does not exist: set data.path to a folder of .mid/.midi files "
            "(or use a bundled corpus: data=bach or data=folk)"
        )
    files = find_midi_files(root, settings.limit_files)
    if not files:
        raise UserError(
            f"no .mid/.midi files under {root}: put MIDI files there or point data.path elsewhere"
        )
    return root, files


# ---------------------------------------------------------------------------------------------
# Tokenizing the files (in worker processes)

_WORKER: dict = {}


def _init_worker(tokenizer: dict, settings: DataConfig, root: str) -> None:
    _WORKER.update(tokenizer=tokenizer_from_dict(tokenizer), settings=settings, root=Path(root))


def _tokenize_one(rel: str) -> tuple[str, FileSegments | SkipFile]:
    try:
        return rel, segment_file(_WORKER["root"] / rel, _WORKER["tokenizer"], _WORKER["settings"])
    except SkipFile as e:
        return rel, e
    except Exception as e:  # anything unforeseen in one file must not stop the run: skip it, say why
        return rel, SkipFile("error", f"{type(e).__name__}: {str(e)[:200]}")


def _lost(rel: str, reason: str, detail: str) -> tuple[str, SkipFile]:
    """A file that killed its worker (worker_crash) or ran past data.file_timeout_s (timeout): skipped."""
    return rel, SkipFile(reason, detail)


def tokenize_files(
    root: Path,
    files: list[str],
    tokenizer: MusicTokenizer,
    settings: DataConfig,
    workers: int,
    progress: bool,
) -> dict[str, FileSegments | SkipFile]:
    """Segment every file, in `workers` processes: {relative path: segments or the reason to skip}.

    Always in worker processes, even one: a file that crashes or hangs its process costs that file only.
    """
    init = (tokenizer_to_dict(tokenizer), settings, str(root))
    results = {}
    with parallel_map(
        _tokenize_one, files, workers, _init_worker, init, timeout_s=settings.file_timeout_s, on_failure=_lost
    ) as it:
        for rel, result in track_progress(it, len(files), f"tokenize {settings.name}", enabled=progress):
            results[rel] = result
    return dict(sorted(results.items()))


# ---------------------------------------------------------------------------------------------
# Writing and reading the cache


def _split_arrays(pieces: list[str], results: dict[str, FileSegments], dtype: type) -> SplitArrays:
    segments, piece_ids, bars = [], [], []
    for index, rel in enumerate(pieces):
        segments += results[rel].segments
        piece_ids += [index] * len(results[rel].segments)
        bars += results[rel].start_bars
    lengths = np.array([len(s) for s in segments], dtype=np.int64)
    tokens = np.concatenate(segments).astype(dtype) if segments else np.zeros(0, dtype=dtype)
    return SplitArrays(
        tokens=tokens,
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        pieces=np.array(piece_ids, dtype=np.int32),
        bars=np.array(bars, dtype=np.int32),
    )


def _write_split(folder: Path, split: str, arrays: SplitArrays) -> None:
    for name in ("tokens", "offsets", "pieces", "bars"):
        np.save(folder / f"{split}.{name}.npy", getattr(arrays, name))


def load_split(path: Path, split: str) -> SplitArrays:
    """One split of a cache folder, memory-mapped (shared by DataLoader workers)."""
    arrays = {
        n: np.load(path / f"{split}.{n}.npy", mmap_mode="r") for n in ("tokens", "offsets", "pieces", "bars")
    }
    return SplitArrays(**arrays)


def load_pieces(path: Path) -> dict[str, list[str]]:
    """{split: [piece path relative to the data folder]} of a cache folder."""
    return json.loads((path / "pieces.json").read_text())


def _manifest(settings, tokenizer, root, files, results, pieces, split_arrays, fingerprint, seconds) -> dict:
    skipped = {rel: r for rel, r in results.items() if isinstance(r, SkipFile)}
    counts: Counter = Counter()
    for r in results.values():
        if isinstance(r, FileSegments):
            counts.update(r.counts)
    return {
        "format": CACHE_FORMAT,
        "hash": config_hash(settings, tokenizer),
        "name": settings.name,
        "source": str(root.resolve()),
        "source_fingerprint": fingerprint,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seconds": round(seconds, 3),
        "tokenizer": {"class": type(tokenizer).__name__, "vocab_size": len(tokenizer)},
        "settings": settings.cache_key(),
        "dtype": str(split_arrays["train"].tokens.dtype),
        "files": {"found": len(files), "tokenized": len(files) - len(skipped), "skipped": len(skipped)},
        "skipped_by_reason": dict(sorted(Counter(r.reason for r in skipped.values()).items())),
        "windows": {
            "total": counts["windows"],
            "kept": sum(len(a) for a in split_arrays.values()),
            "empty_dropped": counts["empty_windows"],
            "overlong_truncated": counts["overlong_truncated"],
            "overlong_dropped": counts["overlong_dropped"],
        },
        "splits": {
            split: {"pieces": len(pieces[split]), "segments": len(a), "tokens": int(a.offsets[-1])}
            for split, a in split_arrays.items()
        },
        "skipped": [{"file": rel, "reason": r.reason, "detail": r.detail} for rel, r in skipped.items()],
    }


def _no_usable_file(root: Path, results: dict) -> UserError:
    reasons = Counter(r.reason for r in results.values() if isinstance(r, SkipFile))
    detail = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
    return UserError(
        f"no usable MIDI file under {root} ({len(results)} found: {detail}): add files with notes"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_abandoned_builds(folder: Path) -> None:
    """Delete temporary folders of interrupted builds of this cache (their process is gone)."""
    for tmp in [*folder.parent.glob(f".tmp-{folder.name}-*"), *folder.parent.glob(f".old-{folder.name}-*")]:
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and (int(pid) == os.getpid() or not _pid_alive(int(pid))):
            shutil.rmtree(tmp, ignore_errors=True)


def _write_cache(
    folder: Path, tokenizer: MusicTokenizer, pieces: dict, split_arrays: dict, manifest: dict
) -> None:
    """Write into a temporary sibling folder, manifest last, then rename it to `folder`."""
    _remove_abandoned_builds(folder)
    tmp = folder.with_name(f".tmp-{folder.name}-{os.getpid()}")
    tmp.mkdir(parents=True)
    (tmp / "tokenizer.json").write_text(json.dumps(tokenizer_to_dict(tokenizer)))
    (tmp / "pieces.json").write_text(json.dumps(pieces))
    for split, arrays in split_arrays.items():
        _write_split(tmp, split, arrays)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    _swap_into_place(tmp, folder)


def _swap_into_place(tmp: Path, folder: Path) -> None:
    """Rename `tmp` to `folder`, moving aside an older build (other source files) first.

    Two processes building the same cache at once both succeed: the last rename wins.
    """
    old = folder.with_name(f".old-{folder.name}-{os.getpid()}")
    try:
        os.replace(folder, old)
    except FileNotFoundError:
        pass
    try:
        os.replace(tmp, folder)
    except OSError:  # a concurrent build got there between the two renames: keep it
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


def build_cache(settings: DataConfig, tokenizer: MusicTokenizer, progress: bool = True) -> PreparedCache:
    """Tokenize the data folder into a new cache folder (replacing any older one for these settings)."""
    start = time.perf_counter()
    root, files = list_source_files(settings)
    folder = cache_path(settings, tokenizer)
    log.info("tokenizing %d files from %s with %d worker(s)", len(files), root, settings.num_workers)
    results = tokenize_files(root, files, tokenizer, settings, settings.num_workers, progress)
    usable = {rel: r for rel, r in results.items() if isinstance(r, FileSegments)}
    if not usable:
        raise _no_usable_file(root, results)
    pieces = {
        s: [rel for rel in usable if split_of(rel, settings.val_fraction, settings.test_fraction) == s]
        for s in SPLITS
    }
    dtype = np.int16 if len(tokenizer) <= np.iinfo(np.int16).max else np.int32
    split_arrays = {s: _split_arrays(pieces[s], usable, dtype) for s in SPLITS}
    fingerprint = source_fingerprint(root, files)
    seconds = time.perf_counter() - start
    manifest = _manifest(
        settings, tokenizer, root, files, results, pieces, split_arrays, fingerprint, seconds
    )
    _write_cache(folder, tokenizer, pieces, split_arrays, manifest)
    log.info("cache written to %s (%.1f s)", folder, seconds)
    return PreparedCache(folder, manifest, built=True, seconds=seconds)


def prepare_cache(settings: DataConfig, tokenizer: MusicTokenizer, progress: bool = True) -> PreparedCache:
    """Export the bundled corpus if `data.corpus` is set, then load the cache or build it.

    The cache is reused when its settings hash and the source files' fingerprint both match.
    """
    start = time.perf_counter()
    check_compatible(tokenizer, settings)
    export = None
    if settings.corpus:
        export = export_corpus(
            settings.corpus,
            settings.source_dir,
            settings.num_workers,
            progress=progress,
            timeout_s=settings.file_timeout_s,
        )
    root, files = list_source_files(settings)
    folder = cache_path(settings, tokenizer)
    manifest = read_manifest(folder)
    if manifest is not None and manifest.get("source_fingerprint") == source_fingerprint(root, files):
        log.info("using cached segments in %s", folder)
        return PreparedCache(folder, manifest, False, time.perf_counter() - start, export)
    if manifest is not None:
        log.info("files under %s changed since %s was built: rebuilding", root, folder)
    return dataclasses.replace(build_cache(settings, tokenizer, progress), export=export)
