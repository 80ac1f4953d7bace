"""The segment cache: tokenize a MIDI folder once, in parallel, and keep the result on disk.

Layout of `<data.cache_dir>/<data.name>-<hash>/` (hash: data + tokenizer settings that change the
tokens, see `config_hash`):

    manifest.json            written last: config hash, counts, per-split segments/tokens, skipped files
    tokenizer.json           `tokenizer_to_dict(tokenizer)`: the tokenizer that made the ids
    pieces.json              {split: [file path relative to the data folder, ...]}, sorted
    <split>.tokens.npy       int16 (int32 for vocabularies over 32767): each piece's tokens once, piece
                             after piece (the stretches its windows cover: overlapping windows share them)
    <split>.starts.npy       int64[n]: window i is tokens[starts[i]:ends[i]]
    <split>.ends.npy         int64[n]
    <split>.pieces.npy       int32[n]: index of the window's piece in pieces.json[split]
    <split>.bars.npy         int32[n]: the bar the window starts on

Windows are ordered by piece, then by bar. A window is always a slice of its piece's token stream
(see `musicvae.data.segments`), so `tokens[starts[i]:ends[i]]` is exactly the window's ids.

Files are tokenized in worker processes (`musicvae.data.parallel`): a file that crashes its worker
(`worker_crash`) or is still tokenizing after `data.file_timeout_s` (`timeout`) is skipped and listed
like a bad file, and the build goes on with a fresh worker. Each piece is appended to raw files in the
build folder as it arrives, then each split is assembled from them in path order: the build holds one
piece in memory at a time (and a small record per piece), not the corpus, and the cache is the same
byte for byte whatever the number of workers. Pieces are split by their content
(`segments.content_key`, `segments.assign_splits`), so copies of one piece in several files land in
one split.

The arrays' reading and writing live in `musicvae.data.cache_store`; this module finds the files,
tokenizes them, names, builds and swaps the cache folder. The cache is built in a temporary folder (named after the host and process building it) and renamed
into place, so an interrupted build never leaves a folder that loads as complete. The manifest also
records a fingerprint of the source files (paths, sizes, mtimes): files added, removed or changed in
the folder rebuild the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
from miditok import MusicTokenizer

from musicvae.data.cache_store import (
    PieceStore,
    StoredPiece,
    store_piece,
    token_dtype,
)
from musicvae.data.config import DataConfig
from musicvae.data.corpus import ExportReport, export_corpus
from musicvae.data.parallel import parallel_map, track_progress
from musicvae.data.segments import SPLITS, assign_splits, check_compatible, segment_file
from musicvae.errors import UserError
from musicvae.tokens.tokenize import SkipFile, tokenizer_from_dict, tokenizer_to_dict

log = logging.getLogger(__name__)

CACHE_FORMAT = 3  # 2: pieces stored once, windows as spans; split by content. 3: no cut after a Position
MIDI_SUFFIXES = (".mid", ".midi")
ABANDONED_AFTER_S = 24 * 3600  # a temporary build folder untouched this long is deleted from any host


@dataclass(frozen=True)
class PreparedCache:
    path: Path
    manifest: dict
    built: bool  # False: loaded as it was
    seconds: float  # to build or to load
    export: ExportReport | None = None  # the bundled corpus export, when data.corpus is set


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


def _init_worker(tokenizer: dict, settings: DataConfig, root: str, dtype: type) -> None:
    _WORKER.update(tokenizer=tokenizer_from_dict(tokenizer), settings=settings, root=Path(root), dtype=dtype)


def _tokenize_one(rel: str) -> tuple[str, StoredPiece | SkipFile]:
    try:
        piece = segment_file(_WORKER["root"] / rel, _WORKER["tokenizer"], _WORKER["settings"])
        return rel, store_piece(piece, _WORKER["dtype"])  # stored form: less to send back
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
) -> Iterator[tuple[str, StoredPiece | SkipFile]]:
    """(relative path, the piece's windows or the reason to skip it) for every file, in completion order.

    Always in worker processes, even one: a file that crashes or hangs its process costs that file only.
    Close the iterator (or exhaust it) to stop the workers.
    """
    init = (tokenizer_to_dict(tokenizer), settings, str(root), token_dtype(tokenizer))
    with parallel_map(
        _tokenize_one, files, workers, _init_worker, init, timeout_s=settings.file_timeout_s, on_failure=_lost
    ) as results:
        yield from track_progress(results, len(files), f"tokenize {settings.name}", enabled=progress)


def _tokenize_into(
    store: PieceStore, root: Path, files: list[str], tokenizer: MusicTokenizer, settings: DataConfig, progress: bool
) -> tuple[dict[str, SkipFile], Counter]:
    """Tokenize every file into `store` as results arrive: (skipped files, window counts)."""
    skipped: dict[str, SkipFile] = {}
    counts: Counter = Counter()
    results = tokenize_files(root, files, tokenizer, settings, settings.num_workers, progress)
    with closing(results):  # stops the workers if writing fails
        for rel, result in results:
            if isinstance(result, SkipFile):
                skipped[rel] = result
            else:
                counts.update(result.counts)
                store.append(rel, result)
    return skipped, counts


def _manifest(settings, tokenizer, root, files, skipped, counts, duplicates, splits, fingerprint, seconds) -> dict:
    skipped = dict(sorted(skipped.items()))
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
        "dtype": np.dtype(token_dtype(tokenizer)).name,
        "files": {
            "found": len(files),
            "tokenized": len(files) - len(skipped),
            "skipped": len(skipped),
            "duplicates": duplicates,  # tokenized, with the same notes as another file (in its split)
        },
        "skipped_by_reason": dict(sorted(Counter(r.reason for r in skipped.values()).items())),
        "windows": {
            "total": counts["windows"],
            "kept": sum(s["segments"] for s in splits.values()),
            "empty_dropped": counts["empty_windows"],
            "overlong_truncated": counts["overlong_truncated"],
            "overlong_dropped": counts["overlong_dropped"],
        },
        "splits": splits,
        "skipped": [{"file": rel, "reason": r.reason, "detail": r.detail} for rel, r in skipped.items()],
    }


def _no_usable_file(root: Path, skipped: dict[str, SkipFile]) -> UserError:
    reasons = Counter(r.reason for r in skipped.values())
    detail = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
    return UserError(
        f"no usable MIDI file under {root} ({len(skipped)} found: {detail}): add files with notes"
    )


# ---------------------------------------------------------------------------------------------
# Temporary build folders: `.tmp-<cache folder>-<host>-<pid>` while building, `.old-...` while swapping

_HOST = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def _build_name(kind: str, folder: Path) -> Path:
    return folder.with_name(f".{kind}-{folder.name}-{_HOST}-{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _last_write(path: Path) -> float:
    """The latest modification time of a folder and the files in it (a running build appends to them)."""
    times = [path.stat().st_mtime]
    for child in path.iterdir():
        try:
            times.append(child.stat().st_mtime)
        except OSError:  # removed meanwhile
            pass
    return max(times)


def _is_abandoned(build: Path, prefix: str, now: float) -> bool:
    """A build of this host whose process is gone, or any build untouched for ABANDONED_AFTER_S.

    On a shared filesystem a pid says nothing about another host's processes: those builds are only
    judged by age. Names without a host (older versions) too.
    """
    host, _, pid = build.name[len(prefix) :].rpartition("-")
    if host == _HOST and pid.isdigit() and (int(pid) == os.getpid() or not _pid_alive(int(pid))):
        return True
    try:
        return now - _last_write(build) > ABANDONED_AFTER_S
    except OSError:  # removed meanwhile
        return False


def _remove_abandoned_builds(folder: Path) -> None:
    """Delete temporary folders of interrupted builds of this cache (see `_is_abandoned`)."""
    now = time.time()
    for kind in ("tmp", "old"):
        prefix = f".{kind}-{folder.name}-"
        for build in folder.parent.glob(f"{prefix}*"):
            if _is_abandoned(build, prefix, now):
                log.info("removing an abandoned cache build: %s", build)
                shutil.rmtree(build, ignore_errors=True)


def _swap_into_place(tmp: Path, folder: Path) -> None:
    """Rename `tmp` to `folder`, moving aside an older build (other source files) first.

    Two processes building the same cache at once both succeed: the last rename wins.
    """
    old = _build_name("old", folder)
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
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_builds(folder)
    tmp = _build_name("tmp", folder)
    tmp.mkdir()
    try:
        store = PieceStore(tmp, token_dtype(tokenizer))
        try:
            skipped, counts = _tokenize_into(store, root, files, tokenizer, settings, progress)
        finally:
            store.close()
        if not store.records:
            raise _no_usable_file(root, skipped)
        keys = {rel: record.content for rel, record in store.records.items()}
        split_by_piece = assign_splits(keys, settings.val_fraction, settings.test_fraction)
        pieces = {split: sorted(rel for rel, s in split_by_piece.items() if s == split) for split in SPLITS}
        splits = {split: store.assemble(split, pieces[split]) for split in SPLITS}
        store.remove_parts()
        (tmp / "tokenizer.json").write_text(json.dumps(tokenizer_to_dict(tokenizer)))
        (tmp / "pieces.json").write_text(json.dumps(pieces))
        seconds = time.perf_counter() - start
        duplicates = len(keys) - len(set(keys.values()))
        fingerprint = source_fingerprint(root, files)
        manifest = _manifest(
            settings, tokenizer, root, files, skipped, counts, duplicates, splits, fingerprint, seconds
        )
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))  # last: marks the build complete
        _swap_into_place(tmp, folder)
    except BaseException:  # an error or Ctrl-C: leave nothing half-built behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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
