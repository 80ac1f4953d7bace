"""The fixed validation sample: the same segments, drawn across pieces, at every validation.

Validation metrics of a VAE that compare segments with each other (z-gap partners, MI, active units)
depend on *which* segments are compared. The cache stores segments piece by piece, bar by bar, so a
prefix of the split (what `limit_val_batches` used to take) covers a few pieces with overlapping
windows. Instead every run validates on one seeded sample of `data.val_segments` segments, drawn
round-robin over the split's pieces (every piece contributes before any gives a second segment), the
same for every mode and seed and whatever the run's seed, and under DDP each rank takes its share
without duplicates.

    sample = EvalSample.draw(arrays.pieces, lengths, n=512, seed=0)   # indices into the split, their pieces
    dataset = EvalSampleDataset(segments, sample)                     # item p: (tokens, p)
    DataLoader(dataset, sampler=ShardedSampler(dataset, rank, world_size), ...)   # MidiDataModule does this
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from musicvae.errors import UserError


@dataclass(frozen=True)
class EvalSample:
    """Sample position p is segment `indices[p]` of the split, from piece `pieces[p]`.

    Positions are ordered by segment length (shortest first) so that batches pad little; no metric
    depends on the order (see `VAEModule.validation_step`).
    """

    indices: np.ndarray  # int64 [N]
    pieces: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.indices)

    @classmethod
    def draw(cls, segment_pieces: np.ndarray, lengths: np.ndarray, n: int, seed: int) -> EvalSample:
        """Up to n segments, round-robin over pieces in a seeded order, each piece's segments shuffled.

        segment_pieces, lengths: [S] per segment of the split. All S segments when n >= S.
        """
        rng = np.random.default_rng(seed)
        segment_pieces = np.asarray(segment_pieces, dtype=np.int64)
        by_piece = [rng.permutation(np.flatnonzero(segment_pieces == p)) for p in np.unique(segment_pieces)]
        by_piece = [by_piece[i] for i in rng.permutation(len(by_piece))]
        chosen: list[int] = []
        for round_ in range(max((len(s) for s in by_piece), default=0)):
            chosen += [int(s[round_]) for s in by_piece if round_ < len(s)]
            if len(chosen) >= n:
                break
        indices = np.array(chosen[:n], dtype=np.int64)
        indices = indices[np.argsort(np.asarray(lengths)[indices], kind="stable")]
        return cls(indices=indices, pieces=segment_pieces[indices])


class EvalSampleDataset(Dataset):
    """Item p: (segment tokens LongTensor[L], sample position p)."""

    def __init__(self, segments: Dataset, sample: EvalSample):
        self.segments, self.sample = segments, sample

    def __len__(self) -> int:
        return len(self.sample)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int]:
        return self.segments[int(self.sample.indices[position])], position


class ShardedSampler(DistributedSampler):
    """Rank r of W takes positions r, r + W, r + 2W, ...: every position on exactly one rank, none padded.

    A DistributedSampler subclass so that Lightning keeps it instead of wrapping it in its own, which
    pads the last shard with repeated items (counted twice in a sum).
    """

    def __init__(self, dataset: Dataset, rank: int = 0, world_size: int = 1):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=False, drop_last=False)
        if len(dataset) < world_size:
            raise UserError(
                f"the validation sample has {len(dataset)} segments for {world_size} processes: "
                "raise data.val_segments (or add validation pieces)"
            )

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


def collate_with_positions(batch, collate) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """[(segment, position)] → (tokens [B, T], mask [B, T], bars [B, T], positions LongTensor[B])."""
    segments, positions = zip(*batch, strict=True)
    tokens, mask, bars = collate(list(segments))
    return tokens, mask, bars, torch.tensor(positions, dtype=torch.long)
