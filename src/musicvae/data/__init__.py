"""MIDI → cached bar-aligned token segments → padded batches.

    from musicvae.data import MidiDataModule, PAD_ID, BOS_ID, EOS_ID

Batches are `(tokens LongTensor[B, T], mask BoolTensor[B, T])`: each row is BOS, a segment's tokens,
EOS, then PAD; the mask is True on BOS..EOS (details in `musicvae.data.datamodule`).
For sampling: `build_tokenizer`, `tokenizer_to_dict` / `tokenizer_from_dict`, `midi_to_segments`,
`tokens_to_midi`.
"""

from musicvae.data.config import DataConfig
from musicvae.data.datamodule import MidiDataModule, collate_segments
from musicvae.data.segments import midi_to_segments
from musicvae.data.tokenize import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    build_tokenizer,
    tokenizer_from_dict,
    tokenizer_to_dict,
    tokens_to_midi,
)

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "DataConfig",
    "MidiDataModule",
    "build_tokenizer",
    "collate_segments",
    "midi_to_segments",
    "tokenizer_from_dict",
    "tokenizer_to_dict",
    "tokens_to_midi",
]
