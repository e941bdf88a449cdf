"""The prompt grounder: the scene a prompt names, said again in the world's canonical words."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from models import StreamingEngine, default_model_path
from models.grounding import GrounderInputs, SceneGrounder, word_runs
from models.text import CachedEmbeddings, TextCache

# Paraphrases no training caption uses as a whole, and the canonical words their scene has.
PARAPHRASES = {
    "evergreens at 2 am": ("forest", "at night"),
    "barren dunes under the moon": ("desert", "at night"),
    "skyscrapers glowing in synthwave colours": ("city skyline", "in neon colours"),
    "a glowing lava field scene under a bright sun": ("volcano", "at noon"),
    "A moody cactus desert at eventide in heavy snow": ("desert", "at dusk", "in the snow"),
    "waves around midday, pouring rain": ("ocean", "at noon", "in the rain"),
}


@pytest.fixture(scope="module")
def engine() -> StreamingEngine:
    return StreamingEngine.from_pretrained(default_model_path(), steps=1)


def test_word_runs_are_every_short_run_of_words_once() -> None:
    assert word_runs("A forest, at night! a forest", 2) == [
        "a", "forest", "at", "night", "a forest", "forest at", "at night", "night a",
    ]  # fmt: skip
    assert word_runs("...", 3) == []


def test_the_shipped_model_grounds_paraphrases_in_its_canonical_words(engine: StreamingEngine) -> None:
    assert engine.prompts.grounder is not None and engine.prompts.grounding, (
        "the shipped pipeline has a grounder, on by default"
    )
    for text, words in PARAPHRASES.items():
        grounded = engine.grounded_prompt(text)
        assert grounded.endswith(f": {text}"), grounded  # the viewer's words follow, all of them
        assert all(word in grounded for word in words), f"{text!r} grounded as {grounded!r}, expected {words}"


REMARKS = [
    "hello", "make it more interesting", "something nice", "I am bored", "surprise me", "what is this",
    "show me something", "faster please", "zoom in", "slower", "I like it", "not this again", "more like that",
    "can you change it", "wow", "next", "something relaxing", "play something else", "this is boring",
    "pan left slowly", "keep going", "nice colours", "less busy", "that's great",
]  # fmt: skip
"""Remarks that name no scene of the world."""


def test_words_a_prompt_already_has_are_not_repeated(engine: StreamingEngine) -> None:
    server_prompt = "more trees, a calm forest at night, in the snow, static camera"  # steer + scene caption
    assert engine.grounded_prompt(server_prompt) == server_prompt
    assert engine.grounded_prompt("evergreens at night") == "forest: evergreens at night"


def test_remarks_that_name_no_scene_pass_unchanged(engine: StreamingEngine) -> None:
    changed = {text: engine.grounded_prompt(text) for text in REMARKS}
    changed = {text: grounded for text, grounded in changed.items() if grounded != text}
    # the card's Limits name the rate: at most a guess in twelve
    assert len(changed) <= len(REMARKS) // 12, changed


def test_a_remark_is_read_as_naming_no_scene_and_a_paraphrase_is_not(engine: StreamingEngine) -> None:
    grounder, embed = engine.prompts.grounder, engine.prompts.text_encoder.sentence_embeddings
    texts = ["hello", "surprise me", "evergreens at 2 am"]
    logits = grounder(grounder.features(texts, embed))
    for attr, values in zip(grounder.config.attributes, grounder.config.values):
        assert logits[attr].shape == (3, len(values) + 1)  # the values, then "unnamed"
    unnamed = {attr: (logits[attr].argmax(-1) == len(values)).tolist()
               for attr, values in zip(grounder.config.attributes, grounder.config.values)}  # fmt: skip
    assert unnamed["subject"] == [True, True, False]
    assert unnamed["palette"] == [True, True, False]
    assert unnamed["weather"] == [True, True, True]  # "evergreens at 2 am" says nothing of the weather


def test_grounding_changes_the_conditioning_and_can_be_turned_off(engine: StreamingEngine) -> None:
    text = next(iter(PARAPHRASES))
    grounded = engine.encode_prompt(text)
    engine.prompts.grounding = False
    try:
        assert engine.grounded_prompt(text) == text
        raw = engine.encode_prompt(text)
    finally:
        engine.prompts.grounding = True
    assert torch.equal(raw, engine.prompts.text_encoder.encode([text])[0])
    assert not torch.equal(grounded, raw)


def _shipped_without_grounder_folder(folder: Path) -> Path:
    """A copy of the shipped model without its `grounder/` folder (and without the probe)."""
    shutil.copytree(default_model_path(), folder, ignore=shutil.ignore_patterns("grounder", "probe"))
    return folder


def test_a_folder_saved_before_grounding_existed_streams_the_words_as_given(tmp_path: Path) -> None:
    older = _shipped_without_grounder_folder(tmp_path / "older")
    index = json.loads((older / "model_index.json").read_text())
    del index["grounder"]
    (older / "model_index.json").write_text(json.dumps(index))
    engine = StreamingEngine.from_pretrained(older)
    assert engine.prompts.grounder is None and not engine.prompts.grounding
    assert engine.grounded_prompt("evergreens at 2 am") == "evergreens at 2 am"
    frame = engine.generate([(engine.new_stream(0), engine.encode_prompt("evergreens at 2 am"))])[0]
    assert frame.shape == (128, 128, 3)
    with pytest.raises(ValueError, match="no grounder"):
        engine.prompts.grounding = True


def test_a_saved_grounder_reads_prompts_as_before(engine: StreamingEngine, tmp_path: Path) -> None:
    engine.prompts.grounder.save_pretrained(tmp_path)
    reloaded = SceneGrounder.from_pretrained(tmp_path).eval()
    embed = engine.prompts.text_encoder.sentence_embeddings
    texts = list(PARAPHRASES)
    assert reloaded.config.attributes == ["subject", "palette", "weather"]
    assert [{a: reading.value for a, reading in found.items()} for found in reloaded.ground(texts, embed)] == [
        {a: reading.value for a, reading in found.items()} for found in engine.prompts.grounder.ground(texts, embed)
    ]


def test_a_prompt_reads_the_same_whatever_else_shares_its_batch(engine: StreamingEngine) -> None:
    from models.grounding import GrounderInputs

    grounder, embed = engine.prompts.grounder, engine.prompts.text_encoder.sentence_embeddings
    texts = list(PARAPHRASES)
    together = grounder(grounder.features(texts, embed))
    one_by_one = [grounder(grounder.features([t], embed)) for t in texts]
    in_two = grounder(GrounderInputs.cat([grounder.features(texts[:2], embed), grounder.features(texts[2:], embed)]))
    for attr, logits in together.items():
        torch.testing.assert_close(logits, torch.cat([alone[attr] for alone in one_by_one]), atol=1e-3, rtol=0)
        torch.testing.assert_close(logits, in_two[attr], atol=1e-3, rtol=0)


def test_training_captions_are_matched_without_their_own_phrases(engine: StreamingEngine) -> None:
    from models.training.grounder import phrase_table

    grounder, embed = engine.prompts.grounder, engine.prompts.text_encoder.sentence_embeddings
    phrases, _ = phrase_table()
    assert len(phrases) == len(grounder.phrase_embeddings)  # the shipped table is today's training phrases
    texts = ["a thicket of pines at cockcrow", "a calm scene"]
    own = [[i for i, p in enumerate(phrases) if p in ("thicket of pines", "at cockcrow")], []]
    assert len(own[0]) == 2
    matched = grounder.features(texts, embed).prompts
    without_own = grounder.features(texts, embed, exclude=own).prompts
    values = [v for vs in grounder.config.values for v in vs]
    spots = slice(grounder.config.embedding_dim, None)  # after the sentence embedding: best match per value
    forest, dawn = values.index("forest"), values.index("dawn")
    scale = grounder.config.spot_scale
    # with its own phrases, a training caption matches exactly; without them, only as near as a new phrasing
    assert matched[0, spots][[forest, dawn]].tolist() == pytest.approx([scale, scale], abs=1e-3)
    assert (without_own[0, spots][[forest, dawn]] < 0.99 * scale).all()
    assert (without_own[0, spots] <= matched[0, spots] + 1e-5).all()
    torch.testing.assert_close(without_own[1], matched[1])  # a text with nothing to leave out reads as before


def test_a_grounder_without_run_scores_or_unnamed_outcome_still_loads_and_reads(
    engine: StreamingEngine, tmp_path: Path
) -> None:
    newer = ("run_scores", "unnamed_class", "own_match_only")
    config = {k: v for k, v in engine.prompts.grounder.config.items() if not k.startswith("_") and k not in newer}
    older = SceneGrounder(**config)  # as grounders were saved before word runs and "unnamed" were scored
    values = older.total_values
    state = {k: v[:values] if k.startswith("head.") else v for k, v in engine.prompts.grounder.state_dict().items()}
    older.load_state_dict({k: v for k, v in state.items() if not k.startswith("run_head")})
    older.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for key in newer:
        del saved[key]  # older configs do not name them
    (tmp_path / "config.json").write_text(json.dumps(saved))
    reloaded = SceneGrounder.from_pretrained(tmp_path).eval()
    assert reloaded.run_head is None
    assert not reloaded.config.unnamed_class
    assert not reloaded.config.own_match_only
    found = reloaded.ground(["evergreens at 2 am"], engine.prompts.text_encoder.sentence_embeddings)[0]
    assert set(found) == {"subject", "palette", "weather"}


def test_a_value_is_weighed_by_its_own_phrase_match_alone(engine: StreamingEngine) -> None:
    grounder = engine.prompts.grounder
    assert grounder is not None and grounder.config.own_match_only
    values = [v for vs in grounder.config.values for v in vs]
    inputs = grounder.features(["a sunny beach"], engine.prompts.text_encoder.sentence_embeddings)
    closer = GrounderInputs(inputs.prompts.clone(), inputs.runs, inputs.run_index)
    closer.prompts[0, grounder.config.embedding_dim + values.index("sunset")] += 0.5  # a closer sunset match
    with torch.no_grad():
        before, after = grounder(inputs)["palette"][0], grounder(closer)["palette"][0]
    palettes = grounder.config.values[grounder.config.attributes.index("palette")]
    sunset = palettes.index("sunset")
    assert after[sunset] > before[sunset]
    others = [i for i in range(len(palettes)) if i != sunset]  # not "unnamed" (last): it weighs every match
    torch.testing.assert_close(after[others], before[others])


def test_a_folder_that_lists_a_grounder_it_lacks_is_refused_by_name(tmp_path: Path) -> None:
    from models.loading import check_pipeline_folder

    broken = _shipped_without_grounder_folder(tmp_path / "broken")  # model_index.json still lists it
    with pytest.raises(ValueError, match="grounder/config.json missing"):
        check_pipeline_folder(broken)


def test_a_steer_embeds_only_the_word_runs_no_earlier_prompt_had(engine: StreamingEngine) -> None:
    uncached = engine.prompts.text_encoder.sentence_embeddings
    embedded: list[list[str]] = []

    def recording(texts: list[str]) -> torch.Tensor:
        embedded.append(list(texts))
        return uncached(texts)

    cached = CachedEmbeddings(recording, size=4096)
    scene = "a calm forest at night, in the snow"
    engine.prompts.grounder.expand(f"slower please, {scene}", cached)
    steer = f"more ocean, {scene}"
    assert engine.prompts.grounder.expand(steer, cached) == engine.prompts.grounder.expand(steer, uncached)
    second = embedded[-1]
    assert cached([]).shape == (0, uncached(["x"]).shape[1]), "no texts, no rows, as uncached"
    assert "more ocean" in second and "forest at night" not in second, "the scene's runs come from the cache"
    assert len(second) < len(word_runs(steer, engine.prompts.grounder.config.max_words)) // 2


def test_the_text_cache_keeps_the_most_recently_used() -> None:
    computed: list[str] = []

    def compute(texts: list[str]) -> list[torch.Tensor]:
        computed.extend(texts)
        return [torch.tensor([float(len(t))]) for t in texts]

    cache = TextCache(size=2)
    assert [v.item() for v in cache.get_or_compute(["a", "bb", "a"], compute)] == [1.0, 2.0, 1.0]
    cache.get_or_compute(["a"], compute)  # "a" is now the most recent, "bb" the least
    cache.get_or_compute(["ccc"], compute)
    assert len(cache) == 2
    cache.get_or_compute(["a", "bb"], compute)
    assert computed == ["a", "bb", "ccc", "bb"], "each text computed once while cached; the oldest dropped"


def test_the_engine_grounds_through_its_run_cache(engine: StreamingEngine) -> None:
    text = "a sleepy bay under a pink morning sky, seen from a boat"
    engine.prompts.run_embeddings.cache.clear()
    engine.prompts._grounded.cache_clear()  # the grounded prompt itself is cached too
    grounded = engine.grounded_prompt(text)
    uncached = engine.prompts.text_encoder.sentence_embeddings
    assert len(engine.prompts.run_embeddings.cache) == len(engine.prompts.grounder.features([text], uncached).runs) + 1
    assert grounded == engine.prompts.grounder.expand(text, uncached)
