"""The server's one steer reader: a viewer's words -> wishes, which the policy follows and the prompt leads with.

Each attribute is named by one model, the better of the two the project has on the shared set of
steers (`benchmarks/steer_readers.py`, `pixelcast bench steer-readers`): the trained `SceneGrounder`
for what a frame shows (subject, palette, weather) and MiniLM cosine similarity to the values'
descriptions (`SimilarityNamer`) for pace and camera, which the grounder does not know. A steer is
read once; the policy chooses among the scenes its wishes allow, and the prompt puts the wanted
values' canonical words first, so the picture and the policy never disagree about what was asked.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np

from models.grounding import GROUNDED, SceneGrounder, unsaid
from models.grounding import Embed as GrounderEmbed
from models.text import TextEncoder
from models.world import ATTRIBUTES, attribute_descriptions
from models.world.captions import synonyms
from personalization.wishes import Namer, SimilarityNamer, SteerReader, Vectors, Wishes

# Tuned on MiniLM sentence embeddings (see tests/streamer/test_steering.py): MiniLM scores unrelated
# short phrases up to ~0.5, so a clear mention needs more than the parser's bag-of-words default.
THRESHOLD = 0.7
MARGIN = 0.06

GROUNDER = "grounder"
SIMILARITY = "similarity"
NAMERS = (GROUNDER, SIMILARITY)

NAMER_BY_ATTRIBUTE = {
    "subject": GROUNDER,
    "palette": GROUNDER,
    "weather": GROUNDER,
    "pace": SIMILARITY,
    "camera": SIMILARITY,
}
"""Which model names each attribute: the one that reads it best on the shared set of steers."""


def similarity_namer(
    text_encoder: TextEncoder, threshold: float = THRESHOLD, margin: float = MARGIN
) -> SimilarityNamer:
    """Cosine similarity between a steer's pieces and every attribute value's descriptions, in MiniLM's space."""

    def embed(texts: Sequence[str]) -> Vectors:
        return text_encoder.sentence_embeddings(list(texts)).numpy()

    phrases = [
        (attr, value, phrase)
        for attr, per_value in attribute_descriptions().items()
        if attr in ATTRIBUTES
        for value, value_phrases in per_value.items()
        for phrase in value_phrases
    ]
    vectors = embed([phrase for _, _, phrase in phrases])  # one batched call
    descriptions: dict[str, dict[str, list[Vectors]]] = {}
    for (attr, value, _), vector in zip(phrases, vectors):
        descriptions.setdefault(attr, {}).setdefault(value, []).append(vector)
    stacked = {attr: {value: np.stack(vs) for value, vs in per.items()} for attr, per in descriptions.items()}
    return SimilarityNamer(ATTRIBUTES, stacked, embed, threshold=threshold, margin=margin)


def grounder_namer(grounder: SceneGrounder, embed: GrounderEmbed) -> Namer:
    """The grounder's reading of each part: the values it would put in front of a prompt (sure enough)."""

    def name(parts: list[str]) -> list[Mapping[str, Collection[str]]]:
        return [
            {attr: {reading.value} for attr, reading in found.items() if reading.said}
            for found in grounder.ground(parts, embed)
        ]

    return name


def combined_namer(namers: Mapping[str, Namer], by_attribute: Mapping[str, str]) -> Namer:
    """Each attribute named by its own model; models named by no attribute are never run."""
    used = {name: namers[name] for name in dict.fromkeys(by_attribute.values())}

    def name(parts: list[str]) -> list[Mapping[str, Collection[str]]]:
        readings = {model: namer(parts) for model, namer in used.items()}
        return [
            {attr: values for attr, model in by_attribute.items() if (values := readings[model][i].get(attr))}
            for i in range(len(parts))
        ]

    return name


def build_steer_reader(
    text_encoder: TextEncoder, grounder: SceneGrounder | None, grounder_embed: GrounderEmbed | None = None
) -> SteerReader:
    """The server's reader: `NAMER_BY_ATTRIBUTE` where there is a grounder, cosine similarity alone without one.

    `grounder_embed`: what the grounder embeds word runs with (the engine's cached runs, so a steer
    and the prompts before it share them); `text_encoder.sentence_embeddings` by default.
    """
    similarity = similarity_namer(text_encoder)
    if grounder is None:
        return SteerReader(similarity)
    embed = grounder_embed or text_encoder.sentence_embeddings
    namers: dict[str, Namer] = {GROUNDER: grounder_namer(grounder, embed), SIMILARITY: similarity}
    return SteerReader(combined_namer(namers, NAMER_BY_ATTRIBUTE))


def prompt_lead(wishes: Wishes, scene: Mapping[str, str], steer: str) -> str:
    """The canonical words of the wanted values the scene shows ("forest at night"), to put in front of a prompt.

    MiniLM reads at most 32 tokens, so what the viewer asked for goes first, in the words the denoiser
    reads best (the shipped model was trained on prompts led so); words the `steer` says already, and
    a steer that names nothing, add nothing.
    """
    wanted = [attr for attr in GROUNDED if attr in wishes.want and scene.get(attr) == wishes.want[attr]]
    words = [synonyms(attr, wishes.want[attr])[0] for attr in wanted]
    return " ".join(unsaid(words, steer))
