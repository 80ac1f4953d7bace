"""`MidiDataModule`: cached bar-aligned segments as padded batches.

    dm = MidiDataModule(cfg.data, cfg.tokenizer)
    dm.prepare_data()        # export the corpus if needed, build or load the cache (UserError on user mistakes)
    dm.setup("fit")          # load the splits
    tokens, mask, bars = next(iter(dm.train_dataloader()))

Batches are `(tokens, mask, bars)`:
- `tokens`: LongTensor[B, T]; row i is `BOS, <segment i's tokens>, EOS, PAD, PAD, ...`
  with PAD_ID = 0, BOS_ID = 1, EOS_ID = 2 (the tokenizer's own ids, `dm.tokenizer[...]` decodes them);
- `mask`: BoolTensor[B, T], True on BOS..EOS inclusive, False on padding;
- `bars`: LongTensor[B, T], the bar of every token (0 for BOS and the first bar, counted from the
  Bar tokens; EOS and PAD in the last bar): what a per-bar latent (`model.latent=bar`) needs;
- T = the longest row of the batch (<= `dm.max_len` = data.max_tokens + 2).

Training batches are shuffled and, when `data.transpose` > 0, each segment is shifted by a random
number of semitones in [-transpose, transpose], drawn among the shifts that keep all its pitches
inside the tokenizer's pitch range. Test batches are neither shuffled nor transposed. With
`data.group_by_length`, train batches hold segments of similar lengths, under DDP each process its
own share (`musicvae.data.loading.LengthGroupedBatches`); otherwise Lightning shards them under DDP.
DataLoader workers and pinned memory follow the device the attached trainer trains on
(`MidiDataModule.loader_settings`: `data.loader_workers` auto gives workers on a GPU, none on CPU).

Validation runs on a fixed sample (`musicvae.data.eval_sample`): `data.val_segments` segments drawn
across the val pieces with `data.val_sample_seed`, the same for every run. Its batches are
`(tokens, mask, bars, positions)`, positions LongTensor[B] indexing `dm.val_sample`; under DDP each rank
takes its share of the positions, none twice.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from musicvae.config import to_plain_dict
from musicvae.data.cache import cache_path, prepare_cache, read_manifest
from musicvae.data.cache_store import SplitArrays, load_pieces, load_split
from musicvae.data.config import DataConfig
from musicvae.data.eval_sample import EvalSample, EvalSampleDataset, ShardedSampler, collate_with_positions
from musicvae.data.loading import (
    BatchedDataset,
    LengthGroupedBatches,
    LoaderSettings,
    collate_segments,
)
from musicvae.data.segments import SPLITS, check_compatible
from musicvae.errors import UserError
from musicvae.tokens.attribute_classes import SegmentLabeler
from musicvae.tokens.tokenize import TokenTable, bar_ids, build_tokenizer, token_table

log = logging.getLogger(__name__)


def run_seed() -> int:
    """The run's seed, as seed_everything sets it for Lightning's samplers (0 outside a run)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def own_generator() -> torch.Generator:
    """A loader's own generator for the seed it gives its workers (seeded with the run's seed): without one,
    every new loader iterator draws from the global stream, so a run resumed mid-epoch (one iterator more)
    would draw different noise from then on than the uninterrupted run."""
    return torch.Generator().manual_seed(run_seed())


class PitchShifter:
    """Transposes the Pitch tokens of a segment, keeping every pitch inside the vocabulary."""

    def __init__(self, table: TokenTable, max_shift: int):
        self.table, self.max_shift = table, max_shift

    def shift_range(self, ids: np.ndarray) -> tuple[int, int]:
        """(lowest, highest) shift in [-max_shift, max_shift] that keeps all pitches of `ids` valid."""
        pitches = self.table.pitch[ids]
        pitches = pitches[pitches >= 0]
        if len(pitches) == 0:
            return 0, 0
        low = max(-self.max_shift, self.table.pitch_low - int(pitches.min()))
        high = min(self.max_shift, self.table.pitch_high - int(pitches.max()))
        return low, high

    def shift(self, ids: np.ndarray, semitones: int) -> np.ndarray:
        """`ids` with every Pitch token moved by `semitones` (a copy; the shift must be in range)."""
        out = np.array(ids, dtype=np.int64)
        is_pitch = self.table.pitch[out] >= 0
        out[is_pitch] = self.table.pitch_to_id[self.table.pitch[out[is_pitch]] + semitones]
        return out

    def __call__(self, ids: np.ndarray, generator: torch.Generator | None = None) -> np.ndarray:
        low, high = self.shift_range(ids)
        return self.shift(ids, int(torch.randint(low, high + 1, (), generator=generator)))


class SegmentDataset(Dataset):
    """Item i: LongTensor[L_i] of segment i's token ids (no BOS/EOS), transposed if a shifter is given."""

    def __init__(self, arrays: SplitArrays, shifter: PitchShifter | None = None):
        self.arrays, self.shifter = arrays, shifter

    def __len__(self) -> int:
        return len(self.arrays)

    @property
    def lengths(self) -> np.ndarray:
        """int64 [N]: every segment's token count (no BOS/EOS), read from the cache without loading tokens."""
        return self.arrays.lengths

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.item(index)

    def item(self, index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Segment `index`, transposed (with a shifter) by a shift drawn from `generator` (None: the global one)."""
        ids = np.asarray(self.arrays.window(index), dtype=np.int64)
        if self.shifter is not None:
            ids = self.shifter(ids, generator)
        return torch.from_numpy(ids)

    def spread(self, most: int | None = None) -> list[list[int]]:
        """The split's segments as token lists (never transposed), in order; every k-th one when `most` caps
        them: a spread over its pieces, not the first piece's neighbouring windows, the same for every run."""
        n = len(self)
        step = max(1, n // most) if most else 1
        return [self.arrays.window(i).tolist() for i in range(0, n, step)][:most]


class MidiDataModule(pl.LightningDataModule):
    """Bar-aligned MIDI segments from `cfg.data` tokenized as `cfg.tokenizer` (see the module docstring)."""

    def __init__(self, data_cfg: Any, tokenizer_cfg: Any):
        super().__init__()
        self.settings = DataConfig.from_cfg(data_cfg)
        self.tokenizer_params = to_plain_dict(tokenizer_cfg)
        self._tokenizer = None
        self._manifest: dict | None = None
        self.datasets: dict[str, SegmentDataset] = {}
        self._val_sample: EvalSample | None = None
        self._resume_position = (0, 0)  # (epoch, batches done) a resumed run goes on from (load_state_dict)
        # model.attributes: set by the model (its class edges) before training batches are made; train
        # batches then carry each segment's classes (train_collate)
        self.labeler: SegmentLabeler | None = None

    @classmethod
    def with_tokenizer(cls, data_cfg: Any, tokenizer) -> MidiDataModule:
        """The data module of `data_cfg` tokenized by a tokenizer object (a checkpoint's, rebuilt)."""
        dm = cls(data_cfg, {})
        dm._tokenizer = tokenizer
        check_compatible(tokenizer, dm.settings)
        return dm

    @property
    def tokenizer(self):
        """The miditok tokenizer (built from the config on first use)."""
        if self._tokenizer is None:
            self._tokenizer = build_tokenizer(self.tokenizer_params)
            check_compatible(self._tokenizer, self.settings)
        return self._tokenizer

    @property
    def collate(self) -> partial:
        """Segments -> (tokens, mask, bars) batches (picklable, for DataLoader workers)."""
        return partial(collate_segments, bar_ids=bar_ids(self.tokenizer))

    @property
    def train_collate(self) -> partial:
        """`collate`, plus each segment's attribute classes when a model with attributes set `labeler`."""
        return partial(collate_segments, bar_ids=bar_ids(self.tokenizer), labeler=self.labeler)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def max_len(self) -> int:
        """The longest possible batch length T: max_tokens + BOS + EOS."""
        return self.settings.max_tokens + 2

    @property
    def cache_path(self):
        return cache_path(self.settings, self.tokenizer)

    @property
    def manifest(self) -> dict:
        """The cache's manifest.json (after prepare_data or setup)."""
        if self._manifest is None:
            self._manifest = self._read_manifest()
        return self._manifest

    def _read_manifest(self) -> dict:
        manifest = read_manifest(self.cache_path)
        if manifest is None:
            raise UserError(
                f"no prepared data in {self.cache_path}: call prepare_data() first "
                f"(or run: python scripts/prepare_data.py data={self.settings.name})"
            )
        return manifest

    def prepare_data(self) -> None:
        """Export the corpus if needed and build the cache, or find it ready (idempotent)."""
        self._manifest = prepare_cache(self.settings, self.tokenizer).manifest

    def setup(self, stage: str | None = None) -> None:
        """Load the three splits from the cache (train gets transposition)."""
        if self.datasets:
            return
        self._manifest = self._read_manifest()
        shifter = (
            PitchShifter(token_table(self.tokenizer), self.settings.transpose)
            if self.settings.transpose
            else None
        )
        for split in SPLITS:
            arrays = load_split(self.cache_path, split)
            self.datasets[split] = SegmentDataset(arrays, shifter if split == "train" else None)

    def pieces(self, split: str) -> list[str]:
        """The split's pieces, as paths relative to data.path (a segment's `pieces` entry indexes this)."""
        return load_pieces(self.cache_path)[split]

    @property
    def val_sample(self) -> EvalSample:
        """The fixed validation sample (drawn once; the same for every run with these data settings)."""
        if self._val_sample is None:
            if "val" not in self.datasets:
                self.setup()
            val = self.datasets["val"]
            self._val_sample = EvalSample.draw(
                val.arrays.pieces, val.lengths, self.settings.val_segments, self.settings.val_sample_seed
            )
        return self._val_sample

    def val_sample_batches(self) -> DataLoader:
        """The whole validation sample in position order, as (tokens, mask, bars, positions) batches (every rank)."""
        # built at every validation, so no worker processes: starting them would cost more than the batches
        return self._val_loader(rank=0, world_size=1, settings=LoaderSettings(workers=0, pin_memory=False))

    def _val_loader(self, rank: int, world_size: int, settings: LoaderSettings) -> DataLoader:
        """Rank `rank`'s share of the fixed validation sample: (tokens, mask, bars, positions) batches."""
        dataset = EvalSampleDataset(self.datasets["val"], self.val_sample)
        return DataLoader(
            dataset,
            batch_size=self.settings.batch_size,
            sampler=ShardedSampler(dataset, rank, world_size),
            collate_fn=partial(collate_with_positions, collate=self.collate),
            generator=own_generator(),
            **settings.dataloader_kwargs(),
        )

    def _rank_and_world(self) -> tuple[int, int]:
        """(this process's global rank, processes): from the attached trainer, else (0, 1)."""
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def loader_settings(self) -> LoaderSettings:
        """Workers and pinned memory for the device the attached trainer trains on (CPU without a trainer)."""
        if self.trainer is None:
            return LoaderSettings.for_device(self.settings.loader_workers, torch.device("cpu"))
        return LoaderSettings.for_device(
            self.settings.loader_workers, self.trainer.strategy.root_device, self.trainer.num_devices
        )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup()
        dataset, settings = self.datasets[split], self.loader_settings()
        if shuffle:
            # this rank's share of the shuffled (length-grouped with group_by_length) batches, seeded alike on
            # every rank by the run's seed and the epoch; Lightning keeps the sampler under DDP and calls its
            # set_epoch (see LengthGroupedBatches). A run resumed mid-epoch goes on after the batches its
            # checkpoint had trained on, as the uninterrupted run would.
            rank, world = self._rank_and_world()
            sampler = LengthGroupedBatches(
                dataset.lengths,
                self.settings.batch_size,
                rank=rank,
                world_size=world,
                seed=run_seed(),  # the same on every rank
                group=self.settings.group_by_length,
            )
            sampler.resume_after(*self._resume_position)
            grouped = "grouped by length" if self.settings.group_by_length else "shuffled"
            log.info("%s batches %s: rank %d of %d, %d batches (epoch %d: %d done)", split, grouped, rank, world,
                     len(sampler), sampler.epoch, sampler.skip)  # fmt: skip
            batching: dict[str, Any] = {"dataset": BatchedDataset(dataset), "sampler": sampler, "batch_size": None}
        else:  # in order; under DDP Lightning puts a DistributedSampler in
            batching = {"dataset": dataset, "batch_size": self.settings.batch_size, "shuffle": False}
        log.debug("%s loader: %s", split, settings)
        collate = self.train_collate if split == "train" else self.collate
        return DataLoader(**batching, collate_fn=collate, generator=own_generator(), **settings.dataloader_kwargs())

    def state_dict(self) -> dict:
        """Saved in every checkpoint: where training is in the data, (epoch, its batches trained on).
        Lightning counts a batch processed before the hooks that may save a checkpoint after it run."""
        if self.trainer is None:
            return {}
        return {"epoch": self.trainer.current_epoch,
                "batches_done": int(self.trainer.fit_loop.epoch_loop.batch_progress.current.processed)}  # fmt: skip

    def load_state_dict(self, state_dict: dict) -> None:
        """A resumed run's position: the train loader built next goes on from it (Lightning restores this
        before it asks for the loader, and sets the sampler's epoch only when the next epoch starts)."""
        self._resume_position = (int(state_dict.get("epoch", 0)), int(state_dict.get("batches_done", 0)))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """The fixed validation sample, this rank's share of it: (tokens, mask, bars, positions) batches."""
        rank, world = self._rank_and_world()
        return self._val_loader(rank, world, self.loader_settings())

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
