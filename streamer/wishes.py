"""Free steering text -> wishes over the world's attributes, with MiniLM sentence embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.text import TextEncoder
from models.world import ATTRIBUTES, attribute_descriptions
from personalization.wishes import WishParser

# Tuned on MiniLM sentence embeddings (see tests/streamer/test_wishes.py): MiniLM scores unrelated
# short phrases up to ~0.5, so a clear mention needs more than the parser's bag-of-words default.
THRESHOLD = 0.7
MARGIN = 0.06


def build_wish_parser(text_encoder: TextEncoder, threshold: float = THRESHOLD, margin: float = MARGIN) -> WishParser:
    """A parser whose attribute descriptions and incoming text share one sentence-embedding space."""

    def embed(texts: Sequence[str]) -> np.ndarray:
        return text_encoder.sentence_embeddings(list(texts)).numpy()

    phrases = [
        (attr, value, phrase)
        for attr, per_value in attribute_descriptions().items()
        if attr in ATTRIBUTES
        for value, value_phrases in per_value.items()
        for phrase in value_phrases
    ]
    vectors = embed([phrase for _, _, phrase in phrases])  # one batched call
    descriptions: dict[str, dict[str, list[np.ndarray]]] = {}
    for (attr, value, _), vector in zip(phrases, vectors):
        descriptions.setdefault(attr, {}).setdefault(value, []).append(vector)
    stacked = {attr: {value: np.stack(vs) for value, vs in per.items()} for attr, per in descriptions.items()}
    return WishParser(ATTRIBUTES, stacked, embed, threshold=threshold, margin=margin)
