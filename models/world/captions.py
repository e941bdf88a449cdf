"""Captions for world scenes: templates x synonyms, with a held-out set of phrasings for evaluation."""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Collection
from functools import cache

import numpy as np

from models.world.phrases import SLOT_ATTRIBUTE
from models.world.spec import ATTRIBUTES, SceneSpec
from models.world.vocabulary import WORLD, Vocabulary

SPLITS = ("train", "heldout")
HELDOUT_SYNONYM_RATE = 0.5
"""In held-out captions, the chance that a slot uses a held-out synonym rather than a training one."""

_ARTICLE = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")
_SPACE_BEFORE_MARK = re.compile(r"\s+([,.:;?!)])")
_REPEATED_MARKS = re.compile(r"([,.:;/+])(?:\s*[,.:;/+])+")
_SPACES = re.compile(r"\s{2,}")


def _tidy(text: str) -> str:
    """A template whose slots were left empty, without the stray spaces and punctuation they leave."""
    text = _REPEATED_MARKS.sub(r"\1", _SPACE_BEFORE_MARK.sub(r"\1", text))
    return _SPACES.sub(" ", text).strip(" ,.:;/+-") or "a scene"


def _slots(template: str) -> tuple[str, ...]:
    return tuple(name for _, name, _, _ in string.Formatter().parse(template) if name)


@cache
def templates(split: str, mention: frozenset[str] = frozenset(), vocabulary: Vocabulary = WORLD) -> tuple[str, ...]:
    """The templates of `split` that name every attribute in `mention`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    unknown = set(mention) - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"unknown attribute(s) {', '.join(sorted(unknown))}")
    pool = vocabulary.train_templates if split == "train" else vocabulary.heldout_templates
    chosen = tuple(t for t in pool if set(mention) <= {SLOT_ATTRIBUTE[s] for s in _slots(t)})
    if not chosen:
        raise ValueError(f"no {split} template names all of {', '.join(sorted(mention))}")
    return chosen


def synonyms(attribute: str, value: str, split: str = "train", vocabulary: Vocabulary = WORLD) -> list[str]:
    """Every phrase that can name `value` of `attribute` in captions of `split` (held-out includes train's)."""
    out: list[str] = []
    for slot, table in vocabulary.synonyms.items():
        if SLOT_ATTRIBUTE[slot] == attribute and value in table:
            train, heldout = table[value]
            out += list(train) + (list(heldout) if split == "heldout" else [])
    if not out:
        raise ValueError(f"unknown {attribute} {value!r}")
    return out


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def caption_parts(
    spec: SceneSpec,
    rng: np.random.Generator,
    split: str = "train",
    mention: Collection[str] = (),
    omit: Collection[str] = (),
    vocabulary: Vocabulary = WORLD,
) -> tuple[str, dict[str, str]]:
    """A random caption of `spec` (see `caption`) and the phrase it put in each template slot.

    `omit` leaves the slots of those attributes empty, for text that does not name everything (the
    caption then names no subject, say); it draws the same random numbers as without. A held-out slot
    whose value has no held-out phrase in `vocabulary` takes a training one.
    """
    unknown = set(omit) - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"unknown attribute(s) to omit: {', '.join(sorted(unknown))}")
    pool = templates(split, frozenset(mention) | {"subject", "palette"}, vocabulary)
    template = _pick(rng, pool)
    values = {}
    for slot in _slots(template):
        train, heldout = vocabulary.synonyms[slot][getattr(spec, SLOT_ATTRIBUTE[slot])]
        use_heldout = split == "heldout" and rng.random() < HELDOUT_SYNONYM_RATE
        values[slot] = _pick(rng, heldout if use_heldout and heldout else train)
    kept = {slot: phrase for slot, phrase in values.items() if SLOT_ATTRIBUTE[slot] not in omit}
    text = template.format(**{slot: kept.get(slot, "") for slot in values})
    if len(kept) < len(values):
        text = _tidy(text)
    text = _ARTICLE.sub(r"\1n ", text)
    style = rng.random()
    if style < 0.25:
        text = text[0].upper() + text[1:]
    elif style < 0.35 and text[-1] not in ".?!)":
        text += "."
    return text, kept


def caption(
    spec: SceneSpec, rng: np.random.Generator, split: str = "train", mention: Collection[str] = ()
) -> str:
    """A random caption of `spec` in the phrasings of `split` ("train" or "heldout").

    Every caption names the subject and the palette; `mention` asks for other attributes to be named too.
    """
    return caption_parts(spec, rng, split, mention)[0]


def heldout_phrases(spec: SceneSpec, parts: dict[str, str], vocabulary: Vocabulary = WORLD) -> dict[str, str]:
    """Attribute -> the held-out phrase that named it in a caption's slot `parts` (from `caption_parts`)."""
    return {
        SLOT_ATTRIBUTE[slot]: phrase
        for slot, phrase in parts.items()
        if phrase in vocabulary.synonyms[slot][getattr(spec, SLOT_ATTRIBUTE[slot])][1]
    }


def describe(spec: SceneSpec) -> str:
    """One canonical caption naming every attribute, e.g. 'a calm ocean at sunset, in clear weather, static camera'."""
    first = {slot: WORLD.synonyms[slot][getattr(spec, attr)][0][0] for slot, attr in SLOT_ATTRIBUTE.items()}
    return _ARTICLE.sub(r"\1n ", "a {pa} {s} {p}, {w}, {c}".format(**first))


def attribute_descriptions(vocabulary: Vocabulary = WORLD) -> dict[str, dict[str, list[str]]]:
    """Attribute -> value -> short descriptions (a sentence, then training synonyms), for text matching."""
    return {
        attr: {
            value: [vocabulary.descriptions[attr][value], *synonyms(attr, value, "train", vocabulary)]
            for value in values
        }
        for attr, values in ATTRIBUTES.items()
    }


def training_captions_fingerprint(vocabulary: Vocabulary = WORLD) -> str:
    """A short hash of every training template and synonym: training data changes exactly when it does.

    Held-out phrasings are left out, as they never reach training.
    """
    train_only = {
        slot: {value: list(pair[0]) for value, pair in table.items()} for slot, table in vocabulary.synonyms.items()
    }
    text = json.dumps([list(vocabulary.train_templates), train_only], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
