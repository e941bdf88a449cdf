"""A dictionary's help with words the world's captions never use ("cataract", "sierra", "gloaming").

MiniLM reads rare words poorly: "cataract" sits nearer a night sky than a waterfall. A dictionary
knows better. `pixelcast train` distils one (WordNet) into a small table, shipped in the grounder's
config: for each word or collocation that holds at least one word the training captions never use,
its synonyms and broader terms said in words they do use ("cataract" -> "waterfall", "sierra" ->
"mountain range"). The grounder reads those phrases beside the prompt's own word runs; the prompt the
denoiser reads is not changed by them.

Because every entry holds an unknown word, the training captions never reach the table: the grounder
learns nothing from it, and it only ever adds readings for words the grounder has not seen.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

Lexicon = Mapping[str, Sequence[str]]
"""Lower-case word or collocation ("small hours") -> related phrases in the training captions' words."""

LICENCE_FILE = "WORDNET_LICENSE.txt"
"""Written beside the grounder: WordNet's licence asks that its notice go with every copy, derived tables included."""

LOOKUP_WORDS = 3
"""Longest key of the table, in words (WordNet's collocations are mostly one to three); the grounder's word
runs are as long or longer."""

WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")
"""A word, as the grounder and the lexicon split lower-case text."""


def lexicon_phrases(runs: Sequence[str], lexicon: Lexicon) -> list[str]:
    """The related phrases of a prompt's word `runs` (`models.grounding.word_runs`) found in `lexicon`, each
    once, longest runs first."""
    longest_first = sorted(runs, key=lambda run: -run.count(" "))
    return list(dict.fromkeys(phrase for run in longest_first for phrase in lexicon.get(run, ())))
