"""Stage 7: the prompt grounder (see `models.grounding`), trained on training captions only.

Text only, so it takes minutes: most of it is MiniLM embedding every caption and its word runs.
The embedded features are checkpointed; the linear heads then train in seconds, full batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.grounding import GROUNDED, Embed, GrounderInputs, SceneGrounder
from models.text import CachedEmbeddings
from models.world import ATTRIBUTES, SceneSpec, attribute_descriptions, caption_parts
from models.world.phrases import SLOT_ATTRIBUTE
from models.world.vocabulary import WORLD, Vocabulary

from .checkpoints import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .lexicon import WordNet, build_lexicon, bundled_wordnet, training_words

EMBED_ONCE = 10_000_000
"""Texts whose embeddings `_features` keeps: every distinct caption and word run of a recipe (about 125,000
for 9,000 captions, 190 MB), so none is embedded twice."""

CANONICAL_SLOT = {"subject": "s", "palette": "p", "weather": "w"}
"""The caption slot whose first training phrase is an attribute's canonical words ("forest", "at night")."""


def phrase_table(vocabulary: Vocabulary = WORLD) -> tuple[list[str], list[int]]:
    """The grounder's phrases (each grounded value's description and training phrases) and, for each,
    the index of its value among the grounded attributes' values."""
    descriptions = attribute_descriptions(vocabulary)
    phrases: list[str] = []
    phrase_values: list[int] = []
    grounded_values = ((attr, value) for attr in GROUNDED for value in ATTRIBUTES[attr])
    for value_index, (attr, value) in enumerate(grounded_values):
        phrases += descriptions[attr][value]
        phrase_values += [value_index] * len(descriptions[attr][value])
    return phrases, phrase_values


def make_grounder(
    config: TrainConfig, embed: Embed, table: tuple[list[str], list[int]], vocabulary: Vocabulary = WORLD
) -> SceneGrounder:
    """An untrained grounder whose phrase table holds `table` (from `phrase_table`), with its dictionary
    table distilled from WordNet for the words `vocabulary`'s training captions never use."""
    values = [list(ATTRIBUTES[attr]) for attr in GROUNDED]
    phrases, phrase_values = table
    canonical = [
        [vocabulary.synonyms[CANONICAL_SLOT[attr]][value][0][0] for value in vs] for attr, vs in zip(GROUNDED, values)
    ]
    assert all(SLOT_ATTRIBUTE[CANONICAL_SLOT[attr]] == attr for attr in GROUNDED)
    grounder = SceneGrounder(
        attributes=list(GROUNDED),
        values=values,
        canonical=canonical,
        phrase_values=phrase_values,
        max_words=config.grounder_max_words,
        threshold=config.grounder_threshold,
        run_scores=True,
        unnamed_class=True,
        own_match_only=config.grounder_own_match_only,
        lexicon=build_lexicon(WordNet(bundled_wordnet()), training_words(vocabulary), config.grounder_lexicon_senses),
    )
    grounder.phrase_embeddings.copy_(embed(phrases))
    return grounder


@dataclass
class TrainingCaptions:
    """Training captions of random scenes, with what each names (`training_caption_set`)."""

    texts: list[str]
    specs: list[SceneSpec]
    named: list[set[str]]  # attributes each caption names
    phrases: list[list[str]]  # the phrases each caption put in its slots

    def labels(self, attribute: str) -> torch.Tensor:
        """Each caption's value index of `attribute`, or the "unnamed" index (one past the values) where the
        caption does not name it."""
        values = ATTRIBUTES[attribute]
        return torch.tensor(
            [
                values.index(getattr(spec, attribute)) if attribute in named else len(values)
                for spec, named in zip(self.specs, self.named, strict=True)
            ]
        )


def training_caption_set(config: TrainConfig, vocabulary: Vocabulary = WORLD) -> TrainingCaptions:
    """Random scenes, each with one training caption; an attribute a caption does not name is labelled
    "unnamed". To teach that for subject and palette too (every template names both), each is left out
    of a share of the captions, and another share keeps only the template's own words, like a remark
    that names no scene."""
    rng = np.random.default_rng([config.seed, 7])
    out = TrainingCaptions([], [SceneSpec.random(rng) for _ in range(config.grounder_captions)], [], [])
    for spec in out.specs:
        omit = [attr for attr in ("subject", "palette") if rng.random() < config.grounder_unnamed]
        if rng.random() < config.grounder_no_scene:  # a remark that names nothing: "give me, pan left"
            omit = list(ATTRIBUTES)
        text, slots = caption_parts(spec, rng, split="train", omit=omit, vocabulary=vocabulary)
        out.texts.append(text)
        out.named.append({SLOT_ATTRIBUTE[slot] for slot in slots})
        out.phrases.append(list(slots.values()))
    return out


def _features(
    grounder: SceneGrounder, captions: TrainingCaptions, phrases: list[str], embed: Embed, chunk: int = 250
) -> GrounderInputs:
    """The captions' grounder inputs, each caption matched against the grounder's `phrases` bar its own.

    Chunks share most of their word runs ("at night", "a forest"), so each distinct text goes through
    MiniLM once, in the chunk that first has it: half the embeddings of embedding every chunk's runs.
    """
    embed = CachedEmbeddings(embed, size=EMBED_ONCE)
    rows: dict[str, list[int]] = {}
    for row, phrase in enumerate(phrases):
        rows.setdefault(phrase, []).append(row)
    exclude = [[row for phrase in phrases for row in rows.get(phrase, ())] for phrases in captions.phrases]
    parts = [
        grounder.features(captions.texts[start : start + chunk], embed, exclude[start : start + chunk])
        for start in tqdm(range(0, len(captions.texts), chunk), desc="ground: embed captions", unit="batch")
    ]
    return GrounderInputs.cat(parts)


def train_grounder(
    config: TrainConfig, embed: Embed, work_dir: Path, vocabulary: Vocabulary = WORLD
) -> tuple[SceneGrounder, dict[str, Any]]:
    """Fit the grounder's heads on embedded training captions of `vocabulary` (resuming the embedding);
    returns it and its accuracy per attribute on the captions that name it."""
    path = work_dir / "grounder.pt"
    table = phrase_table(vocabulary)
    grounder = make_grounder(config, embed, table, vocabulary)
    captions = training_caption_set(config, vocabulary)
    recipe = config.grounder_recipe(vocabulary)
    saved = load_checkpoint(path, recipe)
    if saved is not None:
        features = GrounderInputs(**saved["features"])
    else:
        features = _features(grounder, captions, table[0], embed)
        save_checkpoint(path, {"features": features.to_dict()}, recipe)
    unnamed = {attr: len(ATTRIBUTES[attr]) for attr in GROUNDED}  # the "unnamed" logit follows the values
    labels = {attr: captions.labels(attr) for attr in GROUNDED}
    torch.manual_seed(config.seed + 7)
    heads = [grounder.head, grounder.run_head]
    for head in heads:
        head.reset_parameters()
    grounder.mask_head()
    optimizer = torch.optim.Adam(
        [p for head in heads for p in head.parameters()],
        lr=config.grounder_lr,
        weight_decay=config.grounder_weight_decay,
    )
    for _ in tqdm(range(config.grounder_steps), desc="ground: fit", unit="step"):
        logits = grounder(features)
        loss = sum(F.cross_entropy(logits[attr], labels[attr]) for attr in GROUNDED)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    grounder.eval()
    with torch.no_grad():
        logits = grounder(features)
    hits = {attr: logits[attr].argmax(-1) == labels[attr] for attr in GROUNDED}
    named = {attr: labels[attr] != unnamed[attr] for attr in GROUNDED}
    accuracy = {attr: round(float(hits[attr][named[attr]].float().mean()), 4) for attr in GROUNDED}
    unnamed_accuracy = {attr: round(float(hits[attr][~named[attr]].float().mean()), 4) for attr in GROUNDED}
    figures = {
        "captions": len(captions.texts),
        "training_accuracy": accuracy,
        "unnamed_accuracy": unnamed_accuracy,
        "final_loss": round(loss.item(), 4),
        "lexicon_entries": len(grounder.config.lexicon or {}),
    }
    return grounder, figures
