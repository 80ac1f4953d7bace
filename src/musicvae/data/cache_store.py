"""The cache's arrays on disk: each piece's tokens once, windows as spans into them (layout in
`musicvae.data.cache`). Written piece by piece as the tokenizer's results arrive (`PieceStore`), read
back memory-mapped (`load_split`)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from miditok import MusicTokenizer

from musicvae.data.segments import FileSegments


@dataclass(frozen=True)
class SplitArrays:
    """One split: window i is tokens[starts[i]:ends[i]], from piece pieces[i], starting on bar bars[i]."""

    tokens: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    pieces: np.ndarray
    bars: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def lengths(self) -> np.ndarray:
        """int64 [n]: the token count of every window."""
        return np.asarray(self.ends, dtype=np.int64) - np.asarray(self.starts, dtype=np.int64)

    def window(self, index: int) -> np.ndarray:
        """Window `index`'s token ids (a view in the cache's dtype)."""
        return self.tokens[self.starts[index] : self.ends[index]]


@dataclass(frozen=True)
class StoredPiece:
    """A piece as the cache stores it: the stretches of its tokens that windows cover, each once, and
    its windows as spans into them (window k is tokens[starts[k]:ends[k]], starting on bar bars[k])."""

    tokens: np.ndarray  # the cache's dtype
    starts: np.ndarray  # int64 [k]
    ends: np.ndarray  # int64 [k]
    bars: np.ndarray  # int64 [k]
    counts: Counter = field(default_factory=Counter)  # windows, empty_windows, ... (FileSegments.counts)
    content: str = ""  # FileSegments.content: decides the split


def token_dtype(tokenizer: MusicTokenizer) -> type:
    """int16 when every id fits (vocabularies up to 32767), else int32."""
    return np.int16 if len(tokenizer) <= np.iinfo(np.int16).max else np.int32


def store_piece(piece: FileSegments, dtype: type) -> StoredPiece:
    """Keep the stretches of `piece.ids` its windows cover (overlapping windows share them), once."""
    runs: list[tuple[int, int]] = []  # [start, end) stretches of piece.ids kept, in order
    starts, ends = [], []
    kept = 0  # tokens kept before the current stretch
    for start, end in piece.spans:  # in bar order: starts increase
        if not runs or start > runs[-1][1]:  # a gap (a dropped window, a truncated tail): a new stretch
            if runs:
                kept += runs[-1][1] - runs[-1][0]
            runs.append((start, end))
        else:
            runs[-1] = (runs[-1][0], max(runs[-1][1], end))
        starts.append(kept + start - runs[-1][0])
        ends.append(kept + end - runs[-1][0])
    tokens = np.concatenate([piece.ids[a:b] for a, b in runs]) if runs else piece.ids[:0]
    return StoredPiece(
        tokens=tokens.astype(dtype),
        starts=np.array(starts, dtype=np.int64),
        ends=np.array(ends, dtype=np.int64),
        bars=np.array(piece.start_bars, dtype=np.int64),
        counts=piece.counts,
        content=piece.content,
    )


class _NpyWriter:
    """A 1-D .npy file of a known length, written chunk by chunk (np.save needs the whole array)."""

    def __init__(self, path: Path, dtype: type, length: int):
        self.dtype, self.length, self.written = np.dtype(dtype), length, 0
        self.file = open(path, "wb")  # closed in close()
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (length,)}
        np.lib.format.write_array_header_1_0(self.file, header)

    def write(self, values: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(values, dtype=self.dtype).tobytes())
        self.written += len(values)

    def close(self) -> None:
        self.file.close()
        if self.written != self.length:
            raise RuntimeError(f"{self.file.name}: wrote {self.written} values, the header says {self.length}")


def _read(file: BinaryIO, dtype: type, at: int, count: int) -> np.ndarray:
    """`count` values of `dtype` from value `at` of a raw file."""
    file.seek(at * np.dtype(dtype).itemsize)
    return np.fromfile(file, dtype=dtype, count=count)


@dataclass(frozen=True)
class _PieceRecord:
    """Where a piece lies in the raw files (offsets and counts in values, not bytes), and its content."""

    tokens_at: int
    tokens: int
    windows_at: int
    windows: int
    window_tokens: int
    content: str


class PieceStore:
    """Pieces appended to two raw files as they arrive; then each split assembled in path order.

    `pieces.part`: the pieces' tokens; `windows.part`: int64 rows (start, end, bar) relative to the
    piece. Only a small record per piece stays in memory. The split of a piece is decided at the end
    (`assign_splits` needs every piece's content key), when the pieces are read back one at a time.
    """

    def __init__(self, folder: Path, dtype: type):
        self.folder, self.dtype = folder, dtype
        self.tokens_part, self.windows_part = folder / "pieces.part", folder / "windows.part"
        self.tokens_file = open(self.tokens_part, "wb")  # closed in close()
        self.windows_file = open(self.windows_part, "wb")
        self.records: dict[str, _PieceRecord] = {}
        self.tokens = self.windows = 0

    def append(self, rel: str, piece: StoredPiece) -> None:
        rows = np.stack([piece.starts, piece.ends, piece.bars], axis=1).astype(np.int64)
        self.tokens_file.write(piece.tokens.tobytes())
        self.windows_file.write(rows.tobytes())
        window_tokens = int((piece.ends - piece.starts).sum())
        self.records[rel] = _PieceRecord(
            self.tokens, len(piece.tokens), self.windows, len(rows), window_tokens, piece.content
        )
        self.tokens += len(piece.tokens)
        self.windows += len(rows)

    def close(self) -> None:
        self.tokens_file.close()
        self.windows_file.close()

    def assemble(self, split: str, pieces: list[str]) -> dict:
        """Write `<split>.{tokens,starts,ends,pieces,bars}.npy` from `pieces` in their order: its counts."""
        records = [self.records[rel] for rel in pieces]
        n_tokens, n_windows = sum(r.tokens for r in records), sum(r.windows for r in records)
        out = {"tokens": _NpyWriter(self.folder / f"{split}.tokens.npy", self.dtype, n_tokens)}
        for name, dtype in (("starts", np.int64), ("ends", np.int64), ("pieces", np.int32), ("bars", np.int32)):
            out[name] = _NpyWriter(self.folder / f"{split}.{name}.npy", dtype, n_windows)
        offset = 0  # where the piece's tokens start in the split's token array
        with open(self.tokens_part, "rb") as tokens_in, open(self.windows_part, "rb") as windows_in:
            for index, record in enumerate(records):
                rows = _read(windows_in, np.int64, 3 * record.windows_at, 3 * record.windows).reshape(-1, 3)
                out["tokens"].write(_read(tokens_in, self.dtype, record.tokens_at, record.tokens))
                out["starts"].write(rows[:, 0] + offset)
                out["ends"].write(rows[:, 1] + offset)
                out["pieces"].write(np.full(len(rows), index))
                out["bars"].write(rows[:, 2])
                offset += record.tokens
        for writer in out.values():
            writer.close()
        return {
            "pieces": len(records),
            "segments": n_windows,
            "tokens": sum(r.window_tokens for r in records),  # what training reads
            "stored_tokens": n_tokens,  # what is on disk
        }

    def remove_parts(self) -> None:
        self.tokens_part.unlink()
        self.windows_part.unlink()


def load_split(path: Path, split: str) -> SplitArrays:
    """One split of a cache folder, memory-mapped (shared by DataLoader workers)."""
    arrays = {
        name: np.load(path / f"{split}.{name}.npy", mmap_mode="r")
        for name in ("tokens", "starts", "ends", "pieces", "bars")
    }
    return SplitArrays(**arrays)


def load_pieces(path: Path) -> dict[str, list[str]]:
    """{split: [piece path relative to the data folder]} of a cache folder."""
    return json.loads((path / "pieces.json").read_text())
