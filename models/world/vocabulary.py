"""The words captions are written in, as one value: the world's own, or a validation fold of them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from models.world.phrases import DESCRIPTIONS, HELDOUT_TEMPLATES, SYNONYMS, TRAIN_TEMPLATES

Synonyms = Mapping[str, Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]]
"""Slot -> value -> (training phrases, held-out phrases), as `models.world.phrases.SYNONYMS`."""

FOLD_SLOTS = ("s", "p", "pn")
"""The slots a validation fold keeps phrases out of: the subject's and the palette's, which the grounder reads."""


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: caption templates are cached per vocabulary
class Vocabulary:
    """Caption templates per split, phrases per slot and value, and a description per attribute value."""

    synonyms: Synonyms
    train_templates: tuple[str, ...]
    heldout_templates: tuple[str, ...]
    descriptions: Mapping[str, Mapping[str, str]]

    def fold(self, share: float, seed: int) -> Vocabulary:
        """A validation fold: about `share` of each subject and palette value's training phrases (never the
        first, its canonical words) are kept out of training and become its only held-out phrases; other
        slots have none, and held-out captions use the training templates. A model fit on the fold's
        training split and read on its held-out captions meets new phrasings of the training kind, without
        the evaluation's held-out phrasings ever being seen."""
        rng = np.random.default_rng([seed, 31])
        synonyms: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {}
        for slot, table in self.synonyms.items():
            synonyms[slot] = {}
            for value, (train, _) in table.items():
                if slot not in FOLD_SLOTS:
                    synonyms[slot][value] = (train, ())
                    continue
                out = {i for i in range(1, len(train)) if rng.random() < share}
                kept = tuple(p for i, p in enumerate(train) if i not in out)
                synonyms[slot][value] = (kept, tuple(train[i] for i in sorted(out)))
        return Vocabulary(synonyms, self.train_templates, self.train_templates, self.descriptions)


WORLD = Vocabulary(SYNONYMS, TRAIN_TEMPLATES, HELDOUT_TEMPLATES, DESCRIPTIONS)
"""The world's own vocabulary (`models.world.phrases`)."""
