"""Steering text -> wishes: which attribute values the viewer asked for, and which to avoid.

Free text is split into clauses (commas, "and", "but", ...). Each clause, and each of its content
words and word pairs, is embedded with the caller's text encoder; per attribute, the value whose
descriptions are most similar (cosine) wins if the similarity clears ``threshold`` and beats the
runner-up value by ``margin``. A clause with a negation word ("no rain", "not the city", "without
fog") turns what the words after the negation name into avoid-wishes. The encoder and the
description embeddings are passed in (the streamer owns the model), so this module needs only numpy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Vocabulary = Mapping[str, Sequence[str]]
Embed = Callable[[list[str]], np.ndarray]

NEGATIONS = frozenset(
    {"no", "not", "without", "less", "fewer", "never", "none", "avoid", "stop", "dont", "don't", "nothing", "non",
     "nor"}
)  # fmt: skip
RESET_PHRASES = frozenset({"surprise me", "anything", "reset", "clear", "whatever", "anything goes"})
_CLAUSE_SPLIT = re.compile(r"[,;.!?]+|\b(?:and|but|then|also|with)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z][a-z'-]*")
_STOPWORDS = frozenset(
    {"a", "an", "the", "at", "in", "on", "of", "to", "some", "more", "please", "lots", "show", "me", "i", "want",
     "like", "would", "it", "be", "is", "let", "lets", "make", "give", "bit", "little", "much", "very", "by", "for",
     "any", "there", "can", "you", "we", "see", "just", "really", "so", "again", "instead", "maybe"}
)  # fmt: skip


@dataclass(frozen=True)
class Wishes:
    """Hard wishes per attribute: a wanted value, and values to avoid. They hold until changed."""

    want: Mapping[str, str] = field(default_factory=dict)
    avoid: Mapping[str, frozenset[str]] = field(default_factory=dict)
    text: str = ""

    def allowed(self, attr: str, values: Sequence[str]) -> tuple[str, ...]:
        """The values a policy may choose for ``attr``: the wanted one, else all but avoided ones."""
        wanted = self.want.get(attr)
        if wanted in values:
            return (wanted,)
        avoided = self.avoid.get(attr, frozenset())
        left = tuple(v for v in values if v not in avoided)
        return left or tuple(values)  # avoiding everything is not satisfiable: ignore the avoid-wish

    def merged(self, newer: Wishes) -> Wishes:
        """These wishes updated by newer ones: a new want replaces the attribute's wishes, avoids add up."""
        want = dict(self.want)
        avoid = {attr: set(values) for attr, values in self.avoid.items()}
        for attr, value in newer.want.items():
            want[attr] = value
            avoid.pop(attr, None)
        for attr, values in newer.avoid.items():
            avoid.setdefault(attr, set()).update(values)
            if want.get(attr) in values:
                del want[attr]
        return Wishes(want, {a: frozenset(v) for a, v in avoid.items() if v}, newer.text or self.text)

    @property
    def empty(self) -> bool:
        """Whether there is no wish at all."""
        return not self.want and not self.avoid

    def to_fields(self) -> dict[str, str]:
        """Redis HASH fields: ``want:<attr>`` -> value, ``avoid:<attr>`` -> comma-separated values, ``text``."""
        fields = {f"want:{attr}": value for attr, value in self.want.items()}
        fields.update({f"avoid:{attr}": ",".join(sorted(values)) for attr, values in self.avoid.items() if values})
        if self.text:
            fields["text"] = self.text
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Wishes:
        """Inverse of ``to_fields``."""
        want: dict[str, str] = {}
        avoid: dict[str, frozenset[str]] = {}
        for name, value in fields.items():
            kind, _, attr = name.partition(":")
            if kind == "want" and attr:
                want[attr] = value
            elif kind == "avoid" and attr and value:
                avoid[attr] = frozenset(value.split(","))
        return cls(want, avoid, fields.get("text", ""))

    def to_json(self) -> dict[str, object]:
        """JSON-ready form (for export and logs)."""
        return {
            "want": dict(self.want),
            "avoid": {attr: sorted(values) for attr, values in self.avoid.items()},
            "text": self.text,
        }


def split_clauses(text: str) -> list[str]:
    """Clauses of a steer text: split at punctuation and at "and", "but", "with", ..."""
    return [c.strip() for c in _CLAUSE_SPLIT.split(text) if c and c.strip()]


def _words(clause: str) -> list[str]:
    return _WORD.findall(clause.lower())


def _is_negation(word: str) -> bool:
    return word in NEGATIONS or word.endswith("n't")


def is_negated(clause: str) -> bool:
    """Whether a clause carries a negation word ("no", "not", "without", "less", ...; "n't" too)."""
    return any(_is_negation(w) for w in _words(clause))


def scoped(clause: str) -> list[tuple[str, bool]]:
    """``(text, negated)`` parts of a clause: words after its first negation word are negated.

    "ocean without fog" -> [("ocean", False), ("fog", True)]; "no rain" -> [("rain", True)].
    """
    words = _words(clause)
    for i, word in enumerate(words):
        if _is_negation(word):
            rest = [w for w in words[i + 1 :] if not _is_negation(w)]
            parts = [(" ".join(words[:i]), False), (" ".join(rest), True)]
            return [(text, negated) for text, negated in parts if text]
    return [(" ".join(words), False)] if words else []


def _pieces(clause: str) -> list[str]:
    """Text pieces to embed for one clause: the clause without negation words, its content words and pairs."""
    words = [w for w in _words(clause) if not _is_negation(w)]
    content = [w for w in words if w not in _STOPWORDS]
    pieces = [" ".join(words)] if words else []
    pieces += content
    pieces += [f"{a} {b}" for a, b in zip(content, content[1:])]
    return list(dict.fromkeys(p for p in pieces if p))  # unique, in order


def _normalize(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def is_reset(text: str) -> bool:
    """Whether the text asks to drop every wish ("surprise me", "anything")."""
    return " ".join(_words(text)) in RESET_PHRASES


class WishParser:
    """Map steer text onto per-attribute wishes by cosine similarity to value descriptions.

    ``description_embeddings[attr][value]`` is an array ``[k, d]`` of ``k`` descriptions of that
    value (e.g. ``models.world.captions.attribute_descriptions()`` run through the text encoder), and
    ``embed(texts) -> [n, d]`` the same encoder for new text. Embeddings need not be normalized.
    """

    def __init__(
        self,
        vocabulary: Vocabulary,
        description_embeddings: Mapping[str, Mapping[str, np.ndarray]],
        embed: Embed,
        *,
        threshold: float = 0.5,
        margin: float = 0.05,
    ) -> None:
        self.vocabulary = {attr: tuple(values) for attr, values in vocabulary.items()}
        self.embed = embed
        self.threshold = threshold
        self.margin = margin
        self._descriptions: dict[str, list[np.ndarray]] = {}
        for attr, values in self.vocabulary.items():
            per_value = description_embeddings.get(attr, {})
            missing = [v for v in values if v not in per_value]
            if missing:
                raise ValueError(f"no description embeddings for {attr} value(s) {', '.join(missing)}")
            self._descriptions[attr] = [_normalize(np.atleast_2d(per_value[v])) for v in values]

    def _scores(self, pieces: np.ndarray, attr: str) -> np.ndarray:
        """Similarity ``[n_pieces, n_values]``: best match of each piece among each value's descriptions."""
        return np.stack([(pieces @ desc.T).max(axis=1) for desc in self._descriptions[attr]], axis=1)

    def _matches(self, scores: np.ndarray, values: tuple[str, ...]) -> list[tuple[float, str]]:
        """``(similarity, value)`` for each piece that names a value clearly (threshold and margin)."""
        found: list[tuple[float, str]] = []
        for row in scores:
            order = np.argsort(row)[::-1]
            top = float(row[order[0]])
            second = float(row[order[1]]) if len(order) > 1 else -1.0
            if top >= self.threshold and top - second >= self.margin:
                found.append((top, values[int(order[0])]))
        return found

    def parse(self, text: str) -> Wishes:
        """The wishes this text states on its own (empty when it names no attribute value clearly)."""
        clauses = [(part, negated, _pieces(part)) for c in split_clauses(text) for part, negated in scoped(c)]
        all_pieces = [p for _, _, pieces in clauses for p in pieces]
        if not all_pieces:
            return Wishes(text=text)
        vectors = _normalize(self.embed(all_pieces))
        want: dict[str, str] = {}
        avoid: dict[str, set[str]] = {}
        start = 0
        for _, negated, pieces in clauses:
            block = vectors[start : start + len(pieces)]
            start += len(pieces)
            if not pieces:
                continue
            for attr, values in self.vocabulary.items():
                found = self._matches(self._scores(block, attr), values)
                if not found:
                    continue
                if negated:  # "no rain or snow": every value the clause names is avoided
                    named = {value for _, value in found}
                    avoid.setdefault(attr, set()).update(named)
                    if want.get(attr) in named:
                        del want[attr]
                elif len({value for _, value in found}) == 1:  # "ocean or city" names two: no wish
                    value = found[0][1]
                    want[attr] = value
                    avoid.get(attr, set()).discard(value)
        return Wishes(want, {a: frozenset(v) for a, v in avoid.items() if v}, text)

    def update(self, current: Wishes, text: str) -> Wishes:
        """The viewer's wishes after saying ``text``: merged into ``current``, or cleared by "surprise me"."""
        if is_reset(text):
            return Wishes(text=text)
        parsed = self.parse(text)
        return current.merged(parsed) if not parsed.empty else current
