"""MidiDataModule batches: shapes, BOS/EOS/PAD framing, mask, transposition."""

import numpy as np
import pytest
import torch

from musicvae.data import MidiDataModule, collate_segments
from musicvae.data.datamodule import PitchShifter
from musicvae.tokens import BOS_ID, EOS_ID, PAD_ID
from musicvae.tokens.tokenize import token_table


@pytest.fixture
def datamodule(data_cfg):
    cfg = data_cfg("data.val_fraction=0.25", "data.test_fraction=0.25")
    dm = MidiDataModule(cfg.data, cfg.tokenizer)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def check_batch(tokens, mask, dm):
    assert tokens.dtype == torch.long and mask.dtype == torch.bool and tokens.shape == mask.shape
    lengths = mask.sum(1)
    assert tokens.shape[1] == lengths.max() <= dm.max_len
    assert (tokens[:, 0] == BOS_ID).all()
    for row, n in zip(tokens, lengths.tolist(), strict=True):
        assert row[n - 1] == EOS_ID and (row[n:] == PAD_ID).all()
        body = row[1 : n - 1]
        assert not ((body == PAD_ID) | (body == BOS_ID) | (body == EOS_ID)).any()
        assert (body < dm.vocab_size).all()


def test_batches_have_the_documented_shapes_and_ids(datamodule):
    dm = datamodule
    assert dm.vocab_size == len(dm.tokenizer) and dm.max_len == 512 + 2
    assert dm.manifest["splits"]["train"]["segments"] == len(dm.datasets["train"])
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        batches = [batch[:3] for batch in loader]  # val batches also carry the sample positions
        assert sum(len(t) for t, _, _ in batches) == len(loader.dataset) > 0
        is_bar = torch.as_tensor(token_table(dm.tokenizer).bar)
        for tokens, mask, bars in batches:  # bars: 0 at BOS, +1 at each Bar token, never more than data.bars
            assert bars.shape == tokens.shape and (bars[:, 0] == 0).all()
            assert is_bar[tokens[:, 1]].all() and (bars[:, 1] == 0).all()  # a segment opens bar 0 ...
            assert torch.equal(bars[:, 2:] - bars[:, 1:-1], is_bar[tokens[:, 2:]].long())  # ... each Bar the next
            assert bars[mask].max() < dm.settings.bars
        batches = [(tokens, mask) for tokens, mask, _ in batches]
        for tokens, mask in batches:
            assert tokens.shape[0] <= 4
            check_batch(tokens, mask, dm)
            assert (mask == torch.arange(tokens.shape[1]).lt(mask.sum(1, keepdim=True))).all()


def test_val_batches_are_the_cached_segments_of_the_sample(datamodule):
    dm = datamodule
    arrays, sample = dm.datasets["val"].arrays, dm.val_sample
    seen = []
    for tokens, mask, _, positions in dm.val_dataloader():
        for row, position in zip(range(len(tokens)), positions.tolist(), strict=True):
            n, i = int(mask[row].sum()), int(sample.indices[position])
            assert tokens[row, 1 : n - 1].tolist() == arrays.window(i).tolist()
            seen.append(position)
    assert sorted(seen) == list(range(len(sample)))  # every sample position once


def test_collate_pads_to_the_longest():
    tokens, mask, bars = collate_segments([torch.tensor([7, 8, 7, 9]), torch.tensor([7, 5])], bar_ids=[7])
    assert tokens.tolist() == [[BOS_ID, 7, 8, 7, 9, EOS_ID], [BOS_ID, 7, 5, EOS_ID, PAD_ID, PAD_ID]]
    assert mask.tolist() == [[True] * 6, [True, True, True, True, False, False]]
    assert bars.tolist() == [[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0]]  # the 2nd Bar (7) opens bar 1; EOS, PAD: the last


def test_transposition_keeps_pitches_in_range(remi_tokenizer):
    tok = remi_tokenizer
    table = token_table(tok)
    shifter = PitchShifter(table, max_shift=5)
    ids = np.array(
        [tok["Bar_None"], tok["Position_0"], tok["Pitch_105"], tok["Velocity_63"], tok["Pitch_60"]]
    )
    assert shifter.shift_range(ids) == (-5, 3)  # 105 + 3 = 108, the highest pitch
    torch.manual_seed(0)
    seen = set()
    for _ in range(300):
        out = shifter(ids)
        pitches = table.pitch[out]
        shift = int(pitches[2] - 105)
        seen.add(shift)
        assert pitches[4] - 60 == shift  # every pitch moves together
        assert (out[[0, 1, 3]] == ids[[0, 1, 3]]).all()  # other tokens untouched
        assert table.pitch_low <= pitches[pitches >= 0].min() and pitches.max() <= table.pitch_high
    assert seen == set(range(-5, 4))
    low = np.array([tok["Pitch_21"], tok["Pitch_108"]])
    assert shifter.shift_range(low) == (0, 0)


def test_train_split_is_transposed_only_when_asked(data_cfg):
    for transpose, expect_change in ((0, False), (6, True)):
        cfg = data_cfg(f"data.transpose={transpose}")
        dm = MidiDataModule(cfg.data, cfg.tokenizer)
        dm.prepare_data()
        dm.setup("fit")
        train = dm.datasets["train"]
        torch.manual_seed(1)
        changed = any(
            not torch.equal(train[i], torch.from_numpy(train.arrays.window(i).astype(np.int64)))
            for i in range(len(train))
        )
        assert changed == expect_change
        assert dm.datasets["val"].shifter is None


def test_setup_without_prepare_says_what_to_do(data_cfg):
    from musicvae.errors import UserError

    cfg = data_cfg()
    dm = MidiDataModule(cfg.data, cfg.tokenizer)
    with pytest.raises(UserError, match="prepare_data"):
        dm.setup("fit")


def test_plain_dicts_work(midi_folder, tmp_path, compose_cfg):
    from omegaconf import OmegaConf

    tokenizer = OmegaConf.to_container(compose_cfg("prepare_data").tokenizer)
    data = {
        "name": "mine",
        "path": str(midi_folder),
        "cache_dir": str(tmp_path / "c"),
        "workers": 1,
        "batch_size": 2,
    }
    dm = MidiDataModule(data, tokenizer)
    dm.prepare_data()
    tokens, mask, _ = next(iter(dm.train_dataloader()))
    assert tokens.shape[0] == 2 and dm.manifest["name"] == "mine"


def test_length_grouped_batches_cover_every_segment_once_with_less_padding():
    import numpy as np
    import torch

    from musicvae.data.datamodule import LengthGroupedBatches

    torch.manual_seed(0)
    lengths = np.random.default_rng(0).integers(20, 300, size=1000)
    sampler = LengthGroupedBatches(lengths, batch_size=16, pool=10)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 63
    assert sorted(i for b in batches for i in b) == list(range(1000))

    def padded(bs):
        return sum(len(b) * lengths[b].max() for b in bs)

    random_batches = [list(range(i, min(i + 16, 1000))) for i in range(0, 1000, 16)]
    assert padded(batches) < 0.75 * padded(random_batches)
    assert [b[0] for b in batches] != [b[0] for b in LengthGroupedBatches(lengths, 16, 10)]  # reshuffled per epoch
