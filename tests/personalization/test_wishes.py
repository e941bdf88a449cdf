"""Steer text -> wishes with a fake, deterministic bag-of-words embedder (MiniLM-backed tests live elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest

from personalization.wishes import SimilarityNamer, SteerReader, Wishes, scoped, split_clauses

VOCABULARY = {
    "subject": ("ocean", "city", "mountains", "forest"),
    "palette": ("noon", "night", "sunset"),
    "weather": ("clear", "rain", "snow", "fog"),
    "pace": ("calm", "lively"),
}
DESCRIPTIONS = {
    "subject": {"ocean": ["ocean sea waves", "beach"], "city": ["city buildings skyline"],
                "mountains": ["mountains peaks"], "forest": ["forest trees woods"]},
    "palette": {"noon": ["noon midday sun"], "night": ["night dark moon"], "sunset": ["sunset evening glow"]},
    "weather": {"clear": ["sunny dry weather"], "rain": ["rain rainy"], "snow": ["snow snowy"], "fog": ["fog mist"]},
    "pace": {"calm": ["slow calm peaceful"], "lively": ["fast lively energetic"]},
}  # fmt: skip
STEMS = {"snowy": "snow", "rainy": "rain", "foggy": "fog", "mountain": "mountains", "slower": "slow", "faster": "fast"}
WORDS = sorted(
    {STEMS.get(w, w) for descs in DESCRIPTIONS.values() for d in descs.values() for t in d for w in t.split()}
)


def fake_embed(texts: list[str]) -> np.ndarray:
    """Bag of (stemmed) words over a fixed word list; unknown words get their own shared dimension."""
    out = np.zeros((len(texts), len(WORDS) + 1))
    for i, text in enumerate(texts):
        for word in text.lower().split():
            word = STEMS.get(word, word)
            out[i, WORDS.index(word) if word in WORDS else len(WORDS)] += 1.0
    return out


@pytest.fixture
def parser() -> SteerReader:
    embeddings = {a: {v: fake_embed(d) for v, d in values.items()} for a, values in DESCRIPTIONS.items()}
    return SteerReader(SimilarityNamer(VOCABULARY, embeddings, fake_embed))


def test_split_and_scope() -> None:
    assert split_clauses("slower, more ocean and at night but no rain") == [
        "slower",
        "more ocean",
        "at night",
        "no rain",
    ]
    assert scoped("ocean without fog") == [("ocean", False), ("fog", True)]
    assert scoped("no rain") == [("rain", True)]
    assert scoped("i don't want the city") == [("i", False), ("want the city", True)]


def test_positive_wishes(parser: SteerReader) -> None:
    wishes = parser.parse("snowy mountains at night")
    assert dict(wishes.want) == {"subject": "mountains", "weather": "snow", "palette": "night"}
    assert not wishes.avoid
    assert parser.parse("slower please").want == {"pace": "calm"}


@pytest.mark.parametrize(
    ("text", "avoid"),
    [
        ("no rain", {"weather": {"rain"}}),
        ("not the city", {"subject": {"city"}}),
        ("without fog", {"weather": {"fog"}}),
        ("no rain or snow", {"weather": {"rain", "snow"}}),
        ("I don't want the city", {"subject": {"city"}}),
    ],
)
def test_negation(parser: SteerReader, text: str, avoid: dict[str, set[str]]) -> None:
    wishes = parser.parse(text)
    assert {a: set(v) for a, v in wishes.avoid.items()} == avoid
    assert not wishes.want


def test_mixed_clause(parser: SteerReader) -> None:
    wishes = parser.parse("ocean without fog, but not at night")
    assert dict(wishes.want) == {"subject": "ocean"}
    assert {a: set(v) for a, v in wishes.avoid.items()} == {"weather": {"fog"}, "palette": {"night"}}


def test_unclear_text_gives_no_wish(parser: SteerReader) -> None:
    assert parser.parse("hello there, how are you").empty
    assert parser.parse("ocean or city").want == {}  # a tie: no clear winner, no wish


def test_wishes_hold_until_changed(parser: SteerReader) -> None:
    wishes = parser.update(Wishes(), "snowy mountains")
    wishes = parser.update(wishes, "at night")
    assert dict(wishes.want) == {"subject": "mountains", "weather": "snow", "palette": "night"}
    wishes = parser.update(wishes, "no snow")
    assert "weather" not in wishes.want and wishes.avoid["weather"] == {"snow"}
    wishes = parser.update(wishes, "rain")
    assert wishes.want["weather"] == "rain" and "weather" not in wishes.avoid
    assert parser.update(wishes, "hmm") == wishes  # nothing recognised: unchanged
    assert parser.update(wishes, "Surprise me!").empty


def test_allowed_and_fields_round_trip() -> None:
    wishes = Wishes({"subject": "ocean"}, {"weather": frozenset({"rain", "fog"})}, "ocean, no rain or fog")
    assert wishes.allowed("subject", VOCABULARY["subject"]) == ("ocean",)
    assert wishes.allowed("weather", VOCABULARY["weather"]) == ("clear", "snow")
    assert Wishes(avoid={"pace": frozenset({"calm", "lively"})}).allowed("pace", ("calm", "lively")) == (
        "calm",
        "lively",
    )
    assert Wishes.from_fields(wishes.to_fields()) == wishes


def test_missing_description_embeddings() -> None:
    with pytest.raises(ValueError, match="no description embeddings"):
        SimilarityNamer(VOCABULARY, {}, fake_embed)
