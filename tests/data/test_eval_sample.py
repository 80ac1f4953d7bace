"""The fixed validation sample: across pieces, seeded independently of the run, sharded without duplicates."""

import numpy as np
import pytest
import torch

from musicvae.data.eval_sample import EvalSample, EvalSampleDataset, ShardedSampler
from musicvae.errors import UserError


def pieces_like_the_cache(counts=(30, 5, 12, 1, 8)) -> np.ndarray:
    """Segments stored piece by piece, as the cache does: [0]*30 + [1]*5 + ..."""
    return np.repeat(np.arange(len(counts)), counts)


def test_sample_covers_every_piece_before_any_twice():
    pieces = pieces_like_the_cache()
    sample = EvalSample.draw(pieces, np.ones(len(pieces)), n=10, seed=0)
    assert len(sample) == 10 and len(set(sample.indices.tolist())) == 10
    counts = np.bincount(sample.pieces, minlength=5)
    assert (counts >= 1).all()  # a prefix of the split would be 10 segments of piece 0
    assert counts.max() - counts[counts > 0].min() <= 2 or counts[3] == 1  # round-robin, piece 3 has one
    assert (pieces[sample.indices] == sample.pieces).all()


def test_sample_is_fixed_by_its_seed_and_takes_all_when_small():
    pieces = pieces_like_the_cache()
    lengths = np.arange(len(pieces)) % 7
    a, b = (EvalSample.draw(pieces, lengths, 20, seed=0) for _ in range(2))
    assert np.array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, EvalSample.draw(pieces, lengths, 20, seed=1).indices)
    whole = EvalSample.draw(pieces, lengths, 10_000, seed=0)
    assert sorted(whole.indices.tolist()) == list(range(len(pieces)))
    assert (np.diff(lengths[whole.indices]) >= 0).all()  # ordered by length: batches pad little


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_cover_every_position_once(world):
    pieces = pieces_like_the_cache()
    dataset = EvalSampleDataset([torch.tensor([i]) for i in range(len(pieces))], EvalSample.draw(pieces, np.ones(len(pieces)), 25, 0))
    shards = [list(ShardedSampler(dataset, rank, world)) for rank in range(world)]
    assert sorted(p for s in shards for p in s) == list(range(25))
    assert [len(ShardedSampler(dataset, r, world)) for r in range(world)] == [len(s) for s in shards]


def test_more_processes_than_segments_is_a_clear_error():
    dataset = EvalSampleDataset([torch.tensor([0])] * 2, EvalSample.draw(np.array([0, 1]), np.ones(2), 2, 0))
    with pytest.raises(UserError, match="data.val_segments"):
        ShardedSampler(dataset, 0, 4)
