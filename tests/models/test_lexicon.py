"""The grounder's dictionary table: rare words read through WordNet's synonyms and broader terms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models import StreamingEngine, default_model_path
from models.grounding import word_runs
from models.lexicon import LOOKUP_WORDS, WORD, lexicon_phrases
from models.training.config import TrainConfig
from models.training.grounder import training_caption_set
from models.training.lexicon import WordNet, build_lexicon, bundled_wordnet, training_words
from models.world import SceneSpec, caption

pytestmark = pytest.mark.slow  # builds the grounder's table from WordNet

LICENCE = "  1 This software and database is being provided to you, the LICENSEE, by Princeton.\n"
# A WordNet in miniature, in the database files' own format: offset, lexicographer file, part of
# speech, word count (hex), words with lex ids, pointer count, pointers (symbol offset pos source/target).
NOUNS = {
    "00000001": "00000001 05 n 01 waterfall 0 000 | a steep descent of water",
    "00000002": "00000002 05 n 02 cataract 0 falls 0 001 @ 00000001 n 0000 | a large waterfall",
    "00000003": "00000003 26 n 01 cataract 0 001 @ 00000004 n 0000 | an eye disease",
    "00000004": "00000004 26 n 02 eye_disease 0 clouding 0 000 | a disease of the eye",
    "00000005": "00000005 05 n 01 mountain_range 0 000 | a series of hills",
    "00000006": "00000006 05 n 01 cordillera 0 001 @ 00000005 n 0000 | a long mountain chain",
}
# Index lines: lemma, part of speech, sense count, pointer kinds, sense count again, senses in the
# sense-tagged corpus, then the senses' offsets.
INDEX = {
    "noun": [
        "cataract n 2 1 @ 2 0 00000002 00000003",
        "cordillera n 1 1 @ 1 0 00000006",
        "eye_disease n 1 0 1 0 00000004",
        "falls n 1 1 @ 1 0 00000002",
        "mountain_range n 1 0 1 0 00000005",
        "waterfall n 1 0 1 0 00000001",
    ],
    # a common verb: "falls" is mostly what it does; a collocation whose only sense is a verb's
    "verb": ["fall v 1 0 1 5 00000010", "keep_going v 1 0 1 0 00000011"],
}
DATA = {
    "noun": list(NOUNS.values()),
    "verb": [
        "00000010 38 v 01 fall 0 000 01 + 01 00 | descend",
        "00000011 42 v 02 keep_going 0 tide_over 0 000 01 + 01 00 | suffice until",
    ],
}


def _tiny_wordnet(root: Path) -> Path:
    root.mkdir()
    for pos in ("noun", "adj", "adv", "verb"):
        (root / f"index.{pos}").write_text(LICENCE + "".join(f"{line}\n" for line in INDEX.get(pos, [])))
        (root / f"data.{pos}").write_text(LICENCE + "".join(f"{line}\n" for line in DATA.get(pos, [])))
        (root / f"{pos}.exc").write_text("")
    return root


def test_rare_words_are_said_again_in_known_words_only(tmp_path: Path) -> None:
    wordnet = WordNet(_tiny_wordnet(tmp_path / "wordnet"))
    known = frozenset({"waterfall", "mountain", "range", "falls"})
    table = build_lexicon(wordnet, known, senses=2)
    # the eye-disease sense is read too, but says nothing in known words; "falls" is a synonym
    assert table["cataract"] == ["falls", "waterfall"]
    assert table["cataracts"] == table["cataract"], "a regular plural finds the same entry"
    assert table["cordillera"] == ["mountain range"]
    # words the training captions already use get no entry: the grounder reads those itself
    assert "waterfall" not in table and "mountain range" not in table and "falls" not in table
    assert "eye disease" not in table, "a lemma whose related words are all unknown helps nothing"
    # "falls" names a waterfall, but is mostly an inflection of "fall": no entry, lest "light falls" read as water
    assert "falls" not in build_lexicon(wordnet, frozenset({"waterfall"}), senses=2)
    # only the most common senses count
    assert build_lexicon(wordnet, frozenset({"clouding"}), senses=1).get("cataract") is None
    assert build_lexicon(wordnet, frozenset({"clouding"}), senses=2)["cataract"] == ["clouding"]
    # a verb's synonyms name no scene: "keep going" must not be read as "tide over", the ocean
    assert "keep going" not in build_lexicon(wordnet, frozenset({"tide", "over"}), senses=2)


def test_a_prompt_finds_its_rare_words_and_collocations() -> None:
    table = {"cataract": ["waterfall"], "small hours": ["midnight"], "hours": ["time"]}
    runs = word_runs("A Cataract in the small hours", LOOKUP_WORDS)
    assert lexicon_phrases(runs, table) == ["midnight", "waterfall", "time"]
    assert lexicon_phrases(word_runs("a forest at night", LOOKUP_WORDS), table) == []


def test_the_bundled_wordnet_knows_the_world_s_rarer_words() -> None:
    table = build_lexicon(WordNet(bundled_wordnet()), training_words(), TrainConfig().grounder_lexicon_senses)
    assert "desert" in table["kalahari"]
    assert "forest" in table["rainforest"]
    assert "waterfall" in table["cataract"]


@pytest.fixture(scope="module")
def engine() -> StreamingEngine:
    return StreamingEngine.from_pretrained(default_model_path(), steps=1)


def test_the_shipped_table_is_what_training_builds(engine: StreamingEngine) -> None:
    """`pixelcast train` makes the shipped table again from the installed WordNet and today's phrases."""
    built = build_lexicon(WordNet(bundled_wordnet()), training_words(), TrainConfig().grounder_lexicon_senses)
    assert engine.prompts.grounder.config.lexicon == built


def test_training_captions_never_reach_the_table(engine: StreamingEngine) -> None:
    """Every entry holds a word no training caption uses, so the grounder learned nothing from it."""
    known = training_words()
    table = engine.prompts.grounder.config.lexicon
    assert all(any(w not in known for w in key.split()) for key in table)
    # the grounder's own training captions, those that leave words out included, use known words only
    texts = training_caption_set(TrainConfig().quick()).texts
    rng = np.random.default_rng(0)
    texts += [caption(SceneSpec.random(rng), rng, split="train") for _ in range(2000)]
    for text in texts:
        assert set(WORD.findall(text.lower())) <= known, text
        assert lexicon_phrases(word_runs(text, LOOKUP_WORDS), table) == [], text


def test_a_remark_that_names_no_scene_is_not_read_as_one(engine: StreamingEngine) -> None:
    """A steer such as "keep going" leaves the scene as it is: the grounder says no subject, palette or weather."""
    grounder, embed = engine.prompts.grounder, engine.prompts.text_encoder.sentence_embeddings
    for remark in ("keep going", "go on", "more like this"):
        [found] = grounder.ground([remark], embed)
        assert not any(reading.said for reading in found.values()), (remark, found)


def test_a_rare_place_name_is_read_as_its_scene(engine: StreamingEngine) -> None:
    grounder, embed = engine.prompts.grounder, engine.prompts.text_encoder.sentence_embeddings
    [found] = grounder.ground(["the kalahari at night"], embed)
    assert found["subject"].value == "desert" and found["subject"].said
    assert grounder.expand("the kalahari at night", embed) == "desert: the kalahari at night"
    table = grounder.config.lexicon
    try:
        grounder.register_to_config(lexicon=None)
        [unaided] = grounder.ground(["the kalahari at night"], embed)
    finally:
        grounder.register_to_config(lexicon=table)
    assert unaided["subject"].value != "desert", "MiniLM alone does not place the Kalahari"
