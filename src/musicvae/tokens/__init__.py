"""MIDI ↔ token ids, and what the ids mean: the tokenizer (miditok REMI, specials PAD/BOS/EOS at ids 0–2),
bar timing, the REMI grammar mask that decoding applies, the per-bar attributes (rhythm, polyphony, …)
read from token ids and their quantile classes. Below `data`, `models` and `generation`; imports nothing of them.

    tokenizer = build_tokenizer(cfg.tokenizer)            # or tokenizer_from_dict(checkpoint's dict)
    score, dropped = tokens_to_midi(tokenizer, ids)
    reader = AttributeReader(tokenizer, AttributeDefinitions())   # per-bar attribute values
"""

from musicvae.tokens.attribute_classes import AttributeBins
from musicvae.tokens.attributes import ATTRIBUTES, AttributeDefinitions, AttributeReader
from musicvae.tokens.grammar import RemiGrammar
from musicvae.tokens.tokenize import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    bar_ids,
    build_tokenizer,
    tokenizer_from_dict,
    tokenizer_to_dict,
    tokens_to_midi,
)

__all__ = [
    "ATTRIBUTES",
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "AttributeBins",
    "AttributeDefinitions",
    "AttributeReader",
    "RemiGrammar",
    "bar_ids",
    "build_tokenizer",
    "tokenizer_from_dict",
    "tokenizer_to_dict",
    "tokens_to_midi",
]
