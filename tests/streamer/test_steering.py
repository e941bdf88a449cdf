"""The server's one steer reader, with the shipped grounder and MiniLM: steers become wishes, and the
prompt leads with what they asked for (the similarity thresholds in streamer.steering are tuned on these)."""

from __future__ import annotations

import pytest

from benchmarks.steer_readers import HAND_WRITTEN, contenders, score, steer_set
from models import StreamingEngine, default_model_path
from models.text import TextEncoder, sentence_embedding
from models.world import ATTRIBUTES
from personalization.wishes import SteerReader, Wishes
from streamer.steering import (
    GROUNDER,
    NAMER_BY_ATTRIBUTE,
    SIMILARITY,
    build_steer_reader,
    prompt_lead,
)


@pytest.fixture(scope="module")
def engine() -> StreamingEngine:
    return StreamingEngine.from_pretrained(default_model_path(), steps=1)


@pytest.fixture(scope="module")
def parser(engine: StreamingEngine) -> SteerReader:
    return build_steer_reader(engine.prompts.text_encoder, engine.prompts.grounder, engine.prompts.run_embeddings)


@pytest.mark.slow  # reads 200 steers three times
def test_each_attribute_is_read_by_the_model_that_reads_it_best_on_the_shared_steers(engine: StreamingEngine) -> None:
    encoder, grounder = engine.prompts.text_encoder, engine.prompts.grounder
    assert grounder is not None
    steers = steer_set()
    f1 = {name: score(reader, steers) for name, reader in contenders(encoder, grounder).items()}
    for attr in ATTRIBUTES:
        chosen, other = NAMER_BY_ATTRIBUTE[attr], GROUNDER if NAMER_BY_ATTRIBUTE[attr] == SIMILARITY else SIMILARITY
        assert f1[chosen][attr]["f1"] >= f1[other][attr]["f1"], (attr, f1)
    server = f1["server"]
    assert all(server[attr]["f1"] == f1[NAMER_BY_ATTRIBUTE[attr]][attr]["f1"] for attr in ATTRIBUTES), server


def test_a_paraphrase_only_the_grounder_knows_becomes_a_wish(parser: SteerReader) -> None:
    wishes = parser.parse("evergreens at 2 am")
    assert dict(wishes.want) == {"subject": "forest", "palette": "night"}


def test_the_prompt_leads_with_the_canonical_words_of_what_was_asked() -> None:
    wishes = Wishes({"subject": "forest", "palette": "night", "pace": "calm"})
    scene = {"subject": "forest", "palette": "night", "weather": "snow", "pace": "calm", "camera": "static"}
    assert prompt_lead(wishes, scene, "evergreens at 2 am") == "forest at night"
    assert prompt_lead(wishes, scene, "a forest, please") == "at night"  # said already: not twice
    assert prompt_lead(Wishes(), scene, "hello") == ""
    # a wish the scene does not show (the policy could not honour it) is not claimed in the prompt
    assert prompt_lead(wishes, {**scene, "subject": "ocean"}, "evergreens at 2 am") == "at night"


@pytest.mark.parametrize(("text", "want", "avoid"), HAND_WRITTEN)  # the hand-written part of the shared set
def test_viewer_words_become_wishes(parser: SteerReader, text: str, want: dict, avoid: dict) -> None:
    wishes = parser.parse(text)
    assert dict(wishes.want) == want
    assert {attr: set(values) for attr, values in wishes.avoid.items()} == {a: {v} for a, v in avoid.items()}


@pytest.mark.parametrize("text", ["I like it", "hello there", "hmm", "this is nice", "keep going"])
def test_chatter_is_no_wish(parser: SteerReader, text: str) -> None:
    wishes = parser.parse(text)
    assert not wishes.want and not wishes.avoid


def test_short_padding_embeds_the_same_vectors_as_the_cached_path() -> None:
    """The steer reader's fast path (padding per chunk) must agree with the model's own conditioning path."""
    encoder = TextEncoder(cache_size=0)
    texts = ["ocean", "a calm ocean at sunset in the rain, slowly panning left", "neon", "the seaside at dusk"] * 3
    fast = encoder.sentence_embeddings(texts, chunk=5)  # chunks mix lengths and split the list unevenly
    reference = sentence_embedding(encoder.encode(texts))
    assert fast.shape == (len(texts), 384)
    assert float((fast - reference).abs().max()) < 1e-5
