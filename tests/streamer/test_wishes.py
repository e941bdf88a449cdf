"""Steering text -> wishes with the real MiniLM encoder (the thresholds in streamer.wishes are tuned on these)."""

from __future__ import annotations

import pytest

from models.text import TextEncoder, sentence_embedding
from personalization.wishes import WishParser
from streamer.wishes import build_wish_parser


@pytest.fixture(scope="module")
def parser() -> WishParser:
    return build_wish_parser(TextEncoder())


@pytest.mark.parametrize(
    ("text", "want", "avoid"),
    [
        ("snowy mountains at night", {"subject": "mountains", "weather": "snow", "palette": "night"}, {}),
        ("slower, more ocean", {"subject": "ocean", "pace": "calm"}, {}),
        ("no rain", {}, {"weather": "rain"}),
        ("not the city", {}, {"subject": "city"}),
        ("show me a desert at dawn without fog", {"subject": "desert", "palette": "dawn"}, {"weather": "fog"}),
        ("neon city in the rain", {"subject": "city", "palette": "neon", "weather": "rain"}, {}),
        ("forest in the fog", {"subject": "forest", "weather": "fog"}, {}),
        ("a waterfall at noon", {"subject": "waterfall", "palette": "noon"}, {}),
        ("faster please", {"pace": "lively"}, {}),
    ],
)
def test_viewer_words_become_wishes(parser: WishParser, text: str, want: dict, avoid: dict) -> None:
    wishes = parser.parse(text)
    assert dict(wishes.want) == want
    assert {attr: set(values) for attr, values in wishes.avoid.items()} == {a: {v} for a, v in avoid.items()}


@pytest.mark.parametrize("text", ["I like it", "hello there", "hmm"])
def test_chatter_is_no_wish(parser: WishParser, text: str) -> None:
    wishes = parser.parse(text)
    assert not wishes.want and not wishes.avoid


def test_short_padding_embeds_the_same_vectors_as_the_cached_path() -> None:
    """The wish parser's fast path (padding per chunk) must agree with the model's own conditioning path."""
    encoder = TextEncoder(cache_size=0)
    texts = ["ocean", "a calm ocean at sunset in the rain, slowly panning left", "neon", "the seaside at dusk"] * 3
    fast = encoder.sentence_embeddings(texts, chunk=5)  # chunks mix lengths and split the list unevenly
    reference = sentence_embedding(encoder.encode(texts))
    assert fast.shape == (len(texts), 384)
    assert float((fast - reference).abs().max()) < 1e-5
