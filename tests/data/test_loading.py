"""Batching for training: the vectorised collate, length-grouped batches under DDP, loader settings by device."""

import dataclasses
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from musicvae.data import DataConfig, MidiDataModule, loading
from musicvae.data.loading import BatchedDataset, LengthGroupedBatches, LoaderSettings, collate_segments
from musicvae.errors import UserError
from musicvae.tokens import BOS_ID, EOS_ID, PAD_ID


def loop_collate(batch):
    """The per-row loop that `collate_segments` replaced: the reference it must match bit for bit."""
    length = max(len(s) for s in batch) + 2
    tokens = torch.full((len(batch), length), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.bool)
    for row, segment in enumerate(batch):
        n = len(segment)
        tokens[row, 0] = BOS_ID
        tokens[row, 1 : n + 1] = segment
        tokens[row, n + 1] = EOS_ID
        mask[row, : n + 2] = True
    return tokens, mask


@pytest.mark.parametrize("dtype", [torch.long, torch.int32])
def test_collate_matches_the_per_row_loop(dtype):
    generator = torch.Generator().manual_seed(0)
    batches = [[torch.tensor([5], dtype=dtype)], [torch.tensor([], dtype=dtype), torch.tensor([7, 8], dtype=dtype)]]
    for _ in range(20):
        sizes = torch.randint(0, 60, (int(torch.randint(1, 9, (), generator=generator)),), generator=generator)
        batches.append([torch.randint(3, 300, (int(n),), generator=generator, dtype=dtype) for n in sizes])
    for batch in batches:
        tokens, mask, bars = collate_segments(batch, bar_ids=[7])
        want_tokens, want_mask = loop_collate(batch)
        assert tokens.dtype == torch.long and mask.dtype == torch.bool
        assert torch.equal(tokens, want_tokens) and torch.equal(mask, want_mask)


def spread_and_padding(lengths, batches):
    """(mean max-min length within a batch, padded tokens summed over batches)."""
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    return spread, sum(len(b) * lengths[b].max() for b in batches)


@pytest.mark.parametrize("n, world", [(1000, 1), (1000, 2), (1000, 3), (37, 4), (10, 4)])
def test_ranks_share_the_length_grouped_batches_without_overlap(n, world):
    lengths = np.random.default_rng(0).integers(20, 300, size=n)
    batch_size = 16
    ranks = [LengthGroupedBatches(lengths, batch_size, pool=10, rank=r, world_size=world, seed=3) for r in range(world)]
    shares = [list(s) for s in ranks]
    total = -(-n // batch_size)

    # the same number of batches on every rank (DDP hangs otherwise), as len() announces
    assert [len(share) for share in shares] == [len(s) for s in ranks] == [-(-total // world)] * world

    # the pad rule: the ranks' batches are the epoch's batches plus its first few repeated
    padded = ranks[0].all_batches()
    epoch, repeated = padded[:total], padded[total:]
    assert sorted(i for b in epoch for i in b) == list(range(n))  # every segment once
    assert len(repeated) == world * len(shares[0]) - total and (len(repeated) < world or total < world)
    assert all(b in epoch for b in repeated)
    seen = sorted(i for share in shares for b in share for i in b)
    assert seen == sorted([i for b in epoch for i in b] + [i for b in repeated for i in b])
    for r, share in enumerate(shares):
        for other in shares[r + 1 :]:  # disjoint apart from the repeated batches
            common = {i for b in share for i in b} & {i for b in other for i in b}
            assert common <= {i for b in repeated for i in b}

    if n >= 1000:  # batches of similar lengths: little spread within a batch, far less padding
        grouped = [b for share in shares for b in share]
        plain = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
        (spread, padding), (plain_spread, plain_padding) = (spread_and_padding(lengths, grouped), spread_and_padding(lengths, plain))
        assert spread < 0.25 * plain_spread and padding < 0.75 * plain_padding  # measured ~0.12, ~0.6


def test_set_epoch_reshuffles_the_same_way_on_every_rank():
    lengths = np.random.default_rng(1).integers(20, 300, size=512)  # 64 batches: none repeated

    def share(rank, epoch, seed=0):
        sampler = LengthGroupedBatches(lengths, 8, pool=5, rank=rank, world_size=2, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert share(0, 0) == share(0, 0) and share(1, 3) == share(1, 3)  # deterministic: seed + epoch
    assert share(0, 0) != share(0, 1) and share(0, 0) != share(0, 0, seed=1)
    for epoch in (0, 1):  # within an epoch the two ranks split one list of batches
        union = sorted(i for rank in (0, 1) for b in share(rank, epoch) for i in b)
        assert union == list(range(512))


def test_batched_dataset_loads_whole_batches_in_a_worker():
    segments = [torch.arange(3, 3 + n) for n in (5, 1, 4, 2, 3, 6, 2)]
    sampler = LengthGroupedBatches([len(s) for s in segments], batch_size=3, seed=0)
    loader = DataLoader(BatchedDataset(segments), sampler=sampler, batch_size=None, collate_fn=partial(collate_segments, bar_ids=[4]), num_workers=1)
    assert len(loader) == len(sampler) == 3
    for (tokens, mask, _), indices in zip(loader, sampler, strict=True):
        want_tokens, want_mask = loop_collate([segments[i] for i in indices])
        assert torch.equal(tokens, want_tokens) and torch.equal(mask, want_mask)


def test_loader_settings_follow_the_device(monkeypatch):
    monkeypatch.setattr(loading, "available_cpus", lambda: 16)
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert LoaderSettings.for_device("auto", cpu) == LoaderSettings(workers=0, pin_memory=False)
    assert LoaderSettings.for_device("auto", cuda) == LoaderSettings(workers=4, pin_memory=True)
    assert LoaderSettings.for_device("auto", cuda, processes_per_node=8).workers == 2  # cores shared by 8 ranks
    assert LoaderSettings.for_device("auto", torch.device("mps")) == LoaderSettings(workers=4, pin_memory=False)
    assert LoaderSettings.for_device(3, cpu).workers == 3 and LoaderSettings.for_device(0, cuda).workers == 0
    monkeypatch.setattr(loading, "available_cpus", lambda: 2)
    assert LoaderSettings.for_device("auto", cuda, processes_per_node=4).workers == 1
    kwargs = LoaderSettings.for_device("auto", cuda).dataloader_kwargs()
    assert kwargs == {"num_workers": 2, "pin_memory": True, "persistent_workers": True}
    assert not LoaderSettings(workers=0, pin_memory=True).persistent_workers


def test_loader_workers_is_validated():
    for good in ("auto", 0, 3):
        DataConfig(loader_workers=good).validate()
    for bad in (-1, "many", True, 1.5):
        with pytest.raises(UserError, match="data.loader_workers"):
            DataConfig(loader_workers=bad).validate()


@pytest.fixture
def grouped_dm(data_cfg):
    """A datamodule on the synthetic pieces with length-grouped train batches, one segment per batch row."""
    cfg = data_cfg("data.group_by_length=true", "data.transpose=0", "data.batch_size=2")
    dm = MidiDataModule(cfg.data, cfg.tokenizer)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def ddp_trainer(rank: int):
    """A 2-process DDP trainer as process `rank` sees it (constructed only: nothing is launched)."""
    import pytorch_lightning as pl

    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.strategy.cluster_environment.set_global_rank(rank)
    return trainer


def test_ddp_train_loader_keeps_this_ranks_length_grouped_batches(grouped_dm):
    """What Lightning does to the train loader of each rank of a 2-process DDP run.

    Proves: the datamodule reads rank and world size from the trainer, and Lightning's own dataloader
    processing (`_process_dataloader`, which injects DistributedSamplers) keeps our sampler; with it
    the ranks' batches are disjoint and equal in number. Does not launch processes: the DDP hang itself
    and Lightning's per-epoch `set_epoch` call are not exercised here.
    """
    from pytorch_lightning.trainer.connectors.data_connector import _process_dataloader
    from pytorch_lightning.trainer.states import RunningStage, TrainerFn

    dm = grouped_dm
    shares, batches = [], []
    for rank in (0, 1):
        dm.trainer = ddp_trainer(rank)
        built = dm.train_dataloader()
        loader = _process_dataloader(dm.trainer, TrainerFn.FITTING, RunningStage.TRAINING, built)
        assert isinstance(loader.sampler, LengthGroupedBatches)
        assert loader.sampler is built.sampler  # kept, not replaced by Lightning's DistributedSampler
        assert (loader.sampler.rank, loader.sampler.num_replicas) == (rank, 2)
        shares.append(list(loader.sampler))
        batches.append(list(loader))
    assert len(shares[0]) == len(shares[1]) == len(batches[0]) == len(batches[1]) > 0
    if loader.sampler.total_batches % 2 == 0:  # nothing repeated: disjoint
        assert not {i for b in shares[0] for i in b} & {i for b in shares[1] for i in b}
    assert {i for s in shares for b in s for i in b} == set(range(len(dm.datasets["train"])))
    train = dm.datasets["train"]
    for share, loaded in zip(shares, batches, strict=True):  # the loader builds exactly the sampler's batches
        for indices, (tokens, mask, _) in zip(share, loaded, strict=True):
            assert [tokens[row, 1 : n - 1].tolist() for row, n in enumerate(mask.sum(1).tolist())] == [
                train[i].tolist() for i in indices
            ]

    dm.trainer = ddp_trainer(1)  # without grouping: the same sampler (seeded, resumable), batches not sorted
    dm.settings = dataclasses.replace(dm.settings, group_by_length=False)
    plain = _process_dataloader(dm.trainer, TrainerFn.FITTING, RunningStage.TRAINING, dm.train_dataloader())
    assert isinstance(plain.sampler, LengthGroupedBatches) and not plain.sampler.group and plain.sampler.rank == 1


def test_loaders_get_workers_and_pinned_memory_only_for_a_gpu_trainer(grouped_dm):
    dm = grouped_dm
    assert dm.train_dataloader().num_workers == 0  # no trainer: CPU
    cpu = ddp_trainer(0)
    dm.trainer = cpu
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        assert (loader.num_workers, loader.pin_memory, loader.persistent_workers) == (0, False, False)
    # a GPU trainer as the datamodule sees it (no GPU needed to build the loaders; not iterated)
    dm.trainer = SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device("cuda", 0)), num_devices=1, global_rank=0, world_size=1
    )
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        assert loader.num_workers == min(4, loading.available_cpus()) and loader.pin_memory and loader.persistent_workers
    assert dm.val_sample_batches().num_workers == 0  # rebuilt at every validation: never workers
    dm.settings = dataclasses.replace(dm.settings, loader_workers=0)
    assert dm.train_dataloader().num_workers == 0 and dm.train_dataloader().pin_memory  # an explicit 0 wins


def test_a_resumed_sampler_goes_on_where_the_epoch_stopped():
    lengths = np.random.default_rng(2).integers(20, 300, size=100)
    whole = LengthGroupedBatches(lengths, 8, pool=5, seed=4)
    whole.set_epoch(1)
    epoch1 = list(whole)
    resumed = LengthGroupedBatches(lengths, 8, pool=5, seed=4)
    resumed.resume_after(epoch=1, batches=3)
    assert list(resumed) == epoch1[3:]  # the rest of epoch 1, in its order
    assert list(resumed) == epoch1  # then whole passes again (until Lightning moves the epoch on)
    resumed.resume_after(epoch=1, batches=len(resumed))  # stopped at the epoch's end: the next one, whole
    whole.set_epoch(2)
    assert list(resumed) == list(whole)
    assert len({b.seed for b in epoch1}) == len(epoch1)  # every batch its own seed...
    assert {b.seed for b in epoch1}.isdisjoint(b.seed for b in whole)  # ...and other ones in another epoch


def test_transpositions_come_from_the_batch_not_the_global_stream(grouped_dm):
    """Each batch's random shifts are drawn from its own seed: the same batch loads the same whatever the
    global random state (a loader fetches ahead of training, and a resumed run restores the state later)."""
    from musicvae.data.datamodule import PitchShifter, SegmentDataset
    from musicvae.tokens.tokenize import token_table

    train = grouped_dm.datasets["train"]
    shifted = BatchedDataset(SegmentDataset(train.arrays, PitchShifter(token_table(grouped_dm.tokenizer), 5)))
    batch = next(iter(LengthGroupedBatches(train.lengths, 4, seed=0)))
    torch.manual_seed(1)
    first = shifted[batch]
    torch.manual_seed(2)
    assert [t.tolist() for t in shifted[batch]] == [t.tolist() for t in first]
    assert any(t.tolist() != train[i].tolist() for t, i in zip(first, batch, strict=True))  # shifted at all
    other = type(batch)(list(batch), batch.seed + 1)
    assert [t.tolist() for t in shifted[other]] != [t.tolist() for t in first]  # another seed, other shifts
