"""MIDI → cached bar-aligned token segments → padded batches.

    from musicvae.data import MidiDataModule, DataConfig

Batches are `(tokens LongTensor[B, T], mask BoolTensor[B, T])`: each row is BOS, a segment's tokens,
EOS, then PAD; the mask is True on BOS..EOS (details in `musicvae.data.datamodule`). The corpus export
(`corpus`), the cache (`cache`, `cache_store`), the windows (`segments`) and the fixed validation sample
(`eval_sample`) live beside it; what a token means is `musicvae.tokens`.
"""

from musicvae.data.config import DataConfig
from musicvae.data.datamodule import MidiDataModule, collate_segments
from musicvae.data.segments import midi_to_segments

__all__ = ["DataConfig", "MidiDataModule", "collate_segments", "midi_to_segments"]
