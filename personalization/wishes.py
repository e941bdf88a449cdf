"""Steering text -> wishes: which attribute values the viewer asked for, which to avoid, and which are unnamed.

``SteerReader`` splits free text into clauses (commas, "and", "but", ...) and scopes negations: the
words after "no", "not", "without", ... in a clause name values to avoid. What each part names is one
model's answer, a ``Namer``, so a steer is read once and the policy and the picture follow the same
reading (the server builds the namer from its models: ``streamer.steering``). ``SimilarityNamer`` is
one such model: per attribute, the value whose descriptions are most similar (cosine) to the part or
its words wins if the similarity clears ``threshold`` and beats the runner-up by ``margin``. The
encoder and the description embeddings are passed in, so this module needs only numpy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Vocabulary = Mapping[str, Sequence[str]]
Vectors = npt.NDArray[np.floating[Any]]
"""Row vectors: embeddings of texts."""
Embed = Callable[[list[str]], Vectors]
Namer = Callable[[list[str]], list[Mapping[str, Collection[str]]]]
"""Text parts -> per part, the values it names clearly: attribute -> values (most name one or none)."""

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
        if wanted is not None and wanted in values:
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


def _normalize(matrix: Vectors) -> Vectors:
    rows = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    unit: Vectors = rows / np.where(norms > 0, norms, 1.0)
    return unit


def is_reset(text: str) -> bool:
    """Whether the text asks to drop every wish ("surprise me", "anything")."""
    return " ".join(_words(text)) in RESET_PHRASES


class SteerReader:
    """Reads steer text into wishes with one namer: clauses and negations here, what words name there.

    Args:
        name: the model that says which attribute values each part of a steer names.
    """

    def __init__(self, name: Namer) -> None:
        self.name = name

    def parse(self, text: str) -> Wishes:
        """The wishes this text states on its own (empty when it names no attribute value clearly)."""
        parts = [(part, negated) for clause in split_clauses(text) for part, negated in scoped(clause)]
        if not parts:
            return Wishes(text=text)
        readings = self.name([part for part, _ in parts])
        want: dict[str, str] = {}
        avoid: dict[str, set[str]] = {}
        for (_, negated), named in zip(parts, readings, strict=True):
            for attr, values in named.items():
                found = set(values)
                if not found:
                    continue
                if negated:  # "no rain or snow": every value the part names is avoided
                    avoid.setdefault(attr, set()).update(found)
                    if want.get(attr) in found:
                        del want[attr]
                elif len(found) == 1:  # "ocean or city" names two: no wish
                    (value,) = found
                    want[attr] = value
                    avoid.get(attr, set()).discard(value)
        return Wishes(want, {a: frozenset(v) for a, v in avoid.items() if v}, text)

    def update(self, current: Wishes, text: str) -> Wishes:
        """The viewer's wishes after saying ``text``: merged into ``current``, or cleared by "surprise me"."""
        if is_reset(text):
            return Wishes(text=text)
        parsed = self.parse(text)
        return current.merged(parsed) if not parsed.empty else current


class SimilarityNamer:
    """Names attribute values by cosine similarity between a part's pieces and the values' descriptions.

    ``description_embeddings[attr][value]`` is an array ``[k, d]`` of ``k`` descriptions of that
    value (e.g. ``models.world.captions.attribute_descriptions()`` run through the text encoder), and
    ``embed(texts) -> [n, d]`` the same encoder for new text. Embeddings need not be normalized. The
    pieces of a part are the part itself, its content words and their pairs.
    """

    def __init__(
        self,
        vocabulary: Vocabulary,
        description_embeddings: Mapping[str, Mapping[str, Vectors]],
        embed: Embed,
        *,
        threshold: float = 0.5,
        margin: float = 0.05,
    ) -> None:
        self.vocabulary = {attr: tuple(values) for attr, values in vocabulary.items()}
        self.embed = embed
        self.threshold = threshold
        self.margin = margin
        self._descriptions: dict[str, list[Vectors]] = {}
        for attr, values in self.vocabulary.items():
            per_value = description_embeddings.get(attr, {})
            missing = [v for v in values if v not in per_value]
            if missing:
                raise ValueError(f"no description embeddings for {attr} value(s) {', '.join(missing)}")
            self._descriptions[attr] = [_normalize(np.atleast_2d(per_value[v])) for v in values]

    def __call__(self, parts: list[str]) -> list[Mapping[str, Collection[str]]]:
        """Per part: attribute -> the values one of its pieces names clearly; all pieces embedded at once."""
        pieces = [_pieces(part) for part in parts]
        flat = [piece for group in pieces for piece in group]
        vectors = _normalize(self.embed(flat)) if flat else np.zeros((0, 1))
        named: list[Mapping[str, Collection[str]]] = []
        start = 0
        for group in pieces:
            block = vectors[start : start + len(group)]
            start += len(group)
            found = {attr: self._named(block, attr, values) for attr, values in self.vocabulary.items()}
            named.append({attr: values for attr, values in found.items() if values} if group else {})
        return named

    def _named(self, pieces: Vectors, attr: str, values: tuple[str, ...]) -> set[str]:
        """Values some piece names clearly (similarity clears the threshold and beats the runner-up by the margin)."""
        scores = np.stack([(pieces @ desc.T).max(axis=1) for desc in self._descriptions[attr]], axis=1)
        found: set[str] = set()
        for row in scores:
            order = np.argsort(row)[::-1]
            top = float(row[order[0]])
            second = float(row[order[1]]) if len(order) > 1 else -1.0
            if top >= self.threshold and top - second >= self.margin:
                found.add(values[int(order[0])])
        return found
