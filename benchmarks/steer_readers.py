"""`pixelcast bench steer-readers`: which model reads each attribute of a viewer's steer best.

The shared set of steers is built from the world's held-out phrasings (words neither model was fitted
to: the grounder trains on training captions, the similarity model compares with training synonyms),
alone and combined, negated ("no downpour"), plus chatter that names nothing and hand-written steers.
Readers are compared per attribute by the F1 of the wishes they read (the wanted value or the avoided
values) against those the steers state (`score`). `streamer.steering.NAMER_BY_ATTRIBUTE` follows
the winner per attribute; `tests/streamer/test_steering.py` checks that it still does.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from models.world import ATTRIBUTES
from models.world.captions import synonyms
from personalization.wishes import SteerReader, Wishes

from .grounding import grounder_arguments
from .report import machine, write_json

if TYPE_CHECKING:
    from models.grounding import SceneGrounder
    from models.text import TextEncoder

_PREPOSITION = re.compile(r"^(?:in|at|with|under|during|on|through|by|as|after|shrouded in)\s+(?:the\s+|a\s+|an\s+)?")

CHATTER = ("I like it", "hello there", "hmm", "this is nice", "keep going", "wow, okay")

HAND_WRITTEN: tuple[tuple[str, dict[str, str], dict[str, str]], ...] = (
    ("mountains in the snow at night", {"subject": "mountains", "weather": "snow", "palette": "night"}, {}),
    ("slower, more ocean", {"subject": "ocean", "pace": "calm"}, {}),
    ("no rain", {}, {"weather": "rain"}),
    ("not the city", {}, {"subject": "city"}),
    ("show me a desert at dawn without fog", {"subject": "desert", "palette": "dawn"}, {"weather": "fog"}),
    ("neon city in the rain", {"subject": "city", "palette": "neon", "weather": "rain"}, {}),
    ("forest in the fog", {"subject": "forest", "weather": "fog"}, {}),
    ("a waterfall at noon", {"subject": "waterfall", "palette": "noon"}, {}),
    ("faster please", {"pace": "lively"}, {}),
    ("evergreens at 2 am", {"subject": "forest", "palette": "night"}, {}),
)


@dataclass(frozen=True)
class LabelledSteer:
    """A steer and the wishes it states."""

    text: str
    want: dict[str, str] = field(default_factory=dict)
    avoid: dict[str, str] = field(default_factory=dict)


def heldout_only(attr: str, value: str) -> list[str]:
    """The phrasings of a value that only held-out captions use."""
    train = set(synonyms(attr, value, "train"))
    return [phrase for phrase in synonyms(attr, value, "heldout") if phrase not in train]


def steer_set(seed: int = 0, combined: int = 60) -> list[LabelledSteer]:
    """The shared set: every held-out phrasing alone, `combined` random pairs and triples, negations, chatter."""
    rng = np.random.default_rng(seed)
    phrasings = {(attr, value): heldout_only(attr, value) for attr, values in ATTRIBUTES.items() for value in values}
    steers = [
        LabelledSteer(phrase, {attr: value}) for (attr, value), phrases in phrasings.items() for phrase in phrases
    ]
    for _ in range(combined):
        attrs = [str(a) for a in rng.choice(list(ATTRIBUTES), size=int(rng.integers(2, 4)), replace=False)]
        want = {attr: str(rng.choice(ATTRIBUTES[attr])) for attr in attrs}
        words = [str(rng.choice(phrasings[(attr, value)] or synonyms(attr, value))) for attr, value in want.items()]
        steers.append(LabelledSteer(" ".join(words), want))
    for attr in ("subject", "weather"):
        for value in ATTRIBUTES[attr]:
            for phrase in phrasings[(attr, value)][:2]:
                steers.append(LabelledSteer(f"no {_PREPOSITION.sub('', phrase)}", avoid={attr: value}))
    steers += [LabelledSteer(text) for text in CHATTER]
    steers += [LabelledSteer(text, want, avoid) for text, want, avoid in HAND_WRITTEN]
    return steers


def _wish(wishes: Wishes, attr: str) -> tuple[str | None, frozenset[str]]:
    return wishes.want.get(attr), frozenset(wishes.avoid.get(attr, frozenset()))


def score(reader: SteerReader, steers: list[LabelledSteer], progress: bool = False) -> dict[str, dict[str, float]]:
    """Per attribute: the F1 of the wishes the reader reads against those the steers state, and its accuracy.

    A wish read right counts for it; a wish read that the steer does not state (or states otherwise),
    and a stated wish missed, count against it. F1 decides: a reader that names nothing scores 0 there,
    however often "no wish" is right. Accuracy (the share of steers whose wish, or its absence, is read
    right) is reported beside it.
    """
    counts = {attr: {"right": 0, "wrong": 0, "missed": 0, "agree": 0} for attr in ATTRIBUTES}
    shown: Iterator[LabelledSteer] = tqdm(steers, desc="steers", unit="steer") if progress else iter(steers)
    for steer in shown:
        read = reader.parse(steer.text)
        for attr, count in counts.items():
            stated = (steer.want.get(attr), frozenset({steer.avoid[attr]}) if attr in steer.avoid else frozenset())
            got = _wish(read, attr)
            named, asked = got != (None, frozenset()), stated != (None, frozenset())
            count["agree"] += got == stated
            count["right"] += named and got == stated
            count["wrong"] += named and got != stated
            count["missed"] += asked and got != stated
    return {
        attr: {
            "f1": round(2 * c["right"] / max(1, 2 * c["right"] + c["wrong"] + c["missed"]), 4),
            "accuracy": round(c["agree"] / len(steers), 4),
        }
        for attr, c in counts.items()
    }


def contenders(encoder: TextEncoder, grounder: SceneGrounder) -> dict[str, SteerReader]:
    """Each model alone as a reader ("grounder", "similarity"), and the server's reader ("server")."""
    from streamer.steering import GROUNDER, SIMILARITY, build_steer_reader, grounder_namer, similarity_namer

    return {
        SIMILARITY: SteerReader(similarity_namer(encoder)),
        GROUNDER: SteerReader(grounder_namer(grounder, encoder.sentence_embeddings)),
        "server": build_steer_reader(encoder, grounder),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Score each model alone, and the server's combination, on the shared set."""
    from models.engine import StreamingEngine, default_model_path
    from streamer.steering import GROUNDER, NAMER_BY_ATTRIBUTE, SIMILARITY

    engine = StreamingEngine.from_pretrained(args.model or default_model_path(), steps=1)
    encoder, grounder = engine.prompts.text_encoder, engine.prompts.grounder
    if grounder is None:
        raise SystemExit("the model has no grounder to compare")
    steers = steer_set(args.seed)
    scores = {name: score(reader, steers, progress=True) for name, reader in contenders(encoder, grounder).items()}
    best = {
        attr: max((SIMILARITY, GROUNDER), key=lambda name: (scores[name][attr]["f1"], name == SIMILARITY))
        for attr in ATTRIBUTES
    }
    return {
        "benchmark": "steer_readers",
        "machine": machine(),
        "steers": len(steers),
        "seed": args.seed,
        "accuracy": scores,
        "best_by_attribute": best,
        "server_by_attribute": dict(NAMER_BY_ATTRIBUTE),
        "notes": (
            "f1: of the wishes read against those stated, per attribute (decides); accuracy: share of steers "
            "whose wish for the attribute (wanted, avoided or none) is read right"
        ),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `pixelcast bench steer-readers`."""
    grounder_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the combined steers (default 0)")


def main(args: argparse.Namespace) -> int:
    """Entry point of `pixelcast bench steer-readers`."""
    report = run(args)
    write_json(report, args.json)
    for name, accuracy in report["accuracy"].items():
        print(f"{name:>10} F1: " + ", ".join(f"{attr} {share['f1']:.2f}" for attr, share in accuracy.items()))
    print(f"best per attribute: {report['best_by_attribute']}; the server uses {report['server_by_attribute']}")
    return 0 if report["best_by_attribute"] == report["server_by_attribute"] else 1
