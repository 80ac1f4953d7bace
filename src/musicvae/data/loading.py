"""From segments to training batches: the padded collate, length-grouped batches (one process or DDP),
and the DataLoader settings for the device the model trains on.

    settings = LoaderSettings.for_device("auto", torch.device("cuda", 0))   # workers, pinned memory
    sampler = LengthGroupedBatches(lengths, batch_size=32, rank=0, world_size=2, seed=0)
    loader = DataLoader(BatchedDataset(dataset), sampler=sampler, batch_size=None,
                        collate_fn=partial(collate_segments, bar_ids=bar_ids(tok)), **settings.dataloader_kwargs())
    sampler.set_epoch(1)   # Lightning does this at every epoch: a new order, the same on every rank

`MidiDataModule` builds its loaders with these; see its docstring for the batch format.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset, DistributedSampler

from musicvae.tokens.attribute_classes import SegmentLabeler
from musicvae.tokens.tokenize import BOS_ID, EOS_ID, PAD_ID

AUTO_WORKERS_CAP = 4  # more workers than this only add start-up time: a batch of segments is cheap to build


def bar_index(tokens: torch.Tensor, bar_ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """The bar of every token (B, T) -> (B, T) long: the number of Bar tokens at or before it, minus 1.

    A Bar token opens its bar, so it is in the bar it opens; BOS is in bar 0 (it predicts the first
    Bar), EOS and PAD in the last bar. Generation counts the same way as it emits tokens.
    """
    bar_ids = torch.as_tensor(bar_ids, dtype=tokens.dtype, device=tokens.device)
    return (torch.isin(tokens, bar_ids).cumsum(dim=1) - 1).clamp(min=0)


def collate_segments(
    batch: Sequence[torch.Tensor], bar_ids: Sequence[int], labeler: SegmentLabeler | None = None
) -> tuple[torch.Tensor, ...]:
    """Segments → (tokens LongTensor[B, T], mask BoolTensor[B, T], bars LongTensor[B, T]), and with a
    `labeler` (model.attributes, training) their attribute classes too, LongTensor (B, [K,] A).

    Rows are framed BOS ... EOS and padded with PAD; T = the longest segment + 2. Row i: BOS, segment i,
    EOS, PAD, ...; mask True on BOS..EOS; bars: each token's bar (`bar_index`, from the Bar tokens
    `bar_ids` of the tokenizer: `data.tokenize.bar_ids`).
    """
    lengths = torch.tensor([len(s) for s in batch], dtype=torch.long)  # [B]
    body = pad_sequence(list(batch), batch_first=True, padding_value=PAD_ID)  # [B, L], L = lengths.max()
    n_rows, longest = body.shape
    tokens = torch.full((n_rows, longest + 2), PAD_ID, dtype=torch.long)  # [B, T]
    tokens[:, 0] = BOS_ID
    tokens[:, 1 : longest + 1] = body  # the segments' padding is PAD already
    tokens[torch.arange(n_rows), lengths + 1] = EOS_ID  # right after each segment
    mask = torch.arange(longest + 2) < (lengths + 2).unsqueeze(1)  # [B, T]: BOS + segment + EOS
    if labeler is None:
        return tokens, mask, bar_index(tokens, bar_ids)
    classes = torch.from_numpy(labeler([s.numpy() for s in batch]))  # the segments as batched (transposed)
    return tokens, mask, bar_index(tokens, bar_ids), classes


class SeededBatch(list):
    """A batch's indices (a list, equal to the plain one) carrying the seed its random transpositions are
    drawn from (LengthGroupedBatches gives every batch its own)."""

    def __init__(self, indices: Sequence[int], seed: int):
        super().__init__(indices)
        self.seed = int(seed)


class BatchedDataset(Dataset):
    """Item [i, j, ...]: [dataset[i], dataset[j], ...]; for a SeededBatch each segment's random transposition
    is drawn from a generator seeded with the batch's seed, not from the global stream.

    For a sampler that yields whole batches used as a DataLoader's `sampler` with `batch_size=None`
    (each worker then builds one whole batch): see `LengthGroupedBatches` for why not `batch_sampler`.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # segments, not batches

    def __getitem__(self, batch: list[int]) -> list[torch.Tensor]:
        if isinstance(batch, SeededBatch) and hasattr(self.dataset, "item"):
            generator = torch.Generator().manual_seed(batch.seed)
            return [self.dataset.item(i, generator) for i in batch]
        return [self.dataset[i] for i in batch]


class LengthGroupedBatches(DistributedSampler):
    """Shuffled batches of similar-length segments, this process's share of them: less padding, same data.

    Each epoch, from one generator seeded with `seed + epoch` (the same on every rank): shuffle all
    indices, cut them into pools of `pool` batches, sort each pool by length (unless `group=False`: then
    plain shuffled batches), cut it into batches of `batch_size` (the last one may be short), shuffle the
    batches. The order depends on the seed and the epoch only, so a run resumed mid-epoch continues it:
    `resume_after(epoch, n)` makes the next pass that epoch without its first n batches (the ones already
    trained on). Each batch comes with a seed of its own (from the seed, the epoch and its place), from
    which its segments' random transpositions are drawn: the data do not depend on when a batch is loaded
    (loaders fetch ahead of training), on the worker that loads it, or on the global random stream.

    Padding to the longest row of a batch then costs little: the rows of a batch have similar lengths.
    Rank r of W takes batches r, r + W, r + 2W, ...: the ranks' batches are disjoint and together cover
    every segment. When the batch count does not divide by W, the first batches of the shuffled list are
    repeated at its end (as DistributedSampler pads) so that every rank gets
    ceil(batches / W): DDP hangs when one rank runs out of batches before the others.

    Yields lists of indices, so it goes in a DataLoader as `sampler=` with `batch_size=None` over a
    `BatchedDataset`. Why a DistributedSampler subclass, and not a `batch_sampler`: under DDP with
    `use_distributed_sampler=True`, Lightning replaces a DataLoader's `sampler` unless it already is a
    DistributedSampler; with a custom `batch_sampler` it then either raises (not a BatchSampler) or
    rebuilds the batch sampler around its own sampler. A DistributedSampler is kept as it is, and
    Lightning calls its `set_epoch` at every epoch (the same trick as `eval_sample.ShardedSampler`).

    seed: the same on every rank (the datamodule passes the run's seed); None draws one from torch's
    global generator, for one process only. Without `set_epoch` every pass has the same order.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        pool: int = 50,
        rank: int = 0,
        world_size: int = 1,
        seed: int | None = None,
        group: bool = True,
    ):
        self.lengths = np.asarray(lengths, dtype=np.int64)  # [N]
        self.group, self.skip = group, 0
        if seed is None:
            seed = int(torch.randint(2**31, ()))
        # DistributedSampler checks rank < world_size and keeps epoch/seed; its own sizes are unused
        super().__init__(self.lengths, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.batch_size, self.pool = batch_size, pool

    def __len__(self) -> int:
        """Batches per epoch on this rank: the same on every rank."""
        return -(-self.total_batches // self.num_replicas)

    @property
    def total_batches(self) -> int:
        """Batches per epoch across all ranks, before padding."""
        return -(-len(self.lengths) // self.batch_size)

    def all_batches(self) -> list[list[int]]:
        """This epoch's batches of every rank, padded to a multiple of world_size: rank r takes [r::W]."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).numpy()  # [N]
        size = self.batch_size * self.pool
        batches: list[list[int]] = []
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            if self.group:
                chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        missing = len(self) * self.num_replicas - len(batches)  # < world_size
        while missing > 0:  # a loop: fewer batches than ranks repeats some more than once
            batches += batches[:missing]
            missing = len(self) * self.num_replicas - len(batches)
        return batches

    def resume_after(self, epoch: int, batches: int) -> None:
        """The next pass is epoch `epoch` (the one a run resumes in) without its first `batches` batches; the
        next epoch when all of them were done."""
        self.set_epoch(epoch + 1 if batches >= len(self) else epoch)
        self.skip = batches if 0 < batches < len(self) else 0

    def __iter__(self) -> Iterator[SeededBatch]:
        batches = self.all_batches()
        seeds = np.random.SeedSequence([self.seed % 2**32, self.epoch]).generate_state(len(batches)).tolist()
        mine = [SeededBatch(b, s) for b, s in zip(batches, seeds, strict=True)][self.rank :: self.num_replicas]
        mine, self.skip = mine[self.skip :], 0
        return iter(mine)


@dataclass(frozen=True)
class LoaderSettings:
    """DataLoader settings that depend on the device the model trains on (see `for_device`)."""

    workers: int  # DataLoader worker processes per training process
    pin_memory: bool  # page-locked batches: asynchronous host-to-GPU copies

    @property
    def persistent_workers(self) -> bool:
        """Keep workers between epochs and validations: starting them costs more than a few batches."""
        return self.workers > 0

    @classmethod
    def for_device(cls, requested: int | str, device: torch.device, processes_per_node: int = 1) -> LoaderSettings:
        """The rule, in one place.

        requested: `data.loader_workers`: an integer is used as it is; "auto" gives
        min(4, cores / processes on this node) workers when training on a GPU (batches are built
        while the GPU computes) and 0 on CPU, where workers compete with the model for the same cores.
        Memory is pinned when training on CUDA only.
        """
        if requested == "auto":
            if device.type == "cpu":
                workers = 0
            else:
                workers = min(AUTO_WORKERS_CAP, max(1, available_cpus() // max(1, processes_per_node)))
        else:
            workers = int(requested)
        return cls(workers=workers, pin_memory=device.type == "cuda")

    def dataloader_kwargs(self) -> dict:
        return {
            "num_workers": self.workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
        }


def available_cpus() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
