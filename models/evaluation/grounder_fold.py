"""`pixelcast eval grounder`: how well the grounder reads new phrasings, measured on a validation fold.

The grounder's settings are chosen here, not on the evaluation's held-out captions. A fifth of each
subject and palette value's training phrases are kept out (`Vocabulary.fold`), a grounder is fit by the
recipe's own stage on the rest, and it reads captions that use the kept-out phrases in about half their
slots. The figure is the share it reads right and surely enough to say (`Reading.said`).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.grounding import Embed, Reading, SceneGrounder
from models.text import TextEncoder
from models.training.config import TrainConfig
from models.training.grounder import train_grounder
from models.world import SceneSpec, caption_parts, heldout_phrases
from models.world.vocabulary import WORLD

READ = ("subject", "palette")
"""The attributes the fold scores (the evaluation's adherence is theirs)."""

WORST_SHOWN = 8
"""Kept-out phrases the command prints, worst read first (the JSON report has them all)."""


@dataclasses.dataclass(frozen=True)
class FoldSettings:
    """Which fold, and how many captions read on it."""

    share: float = 0.2  # of each subject and palette value's training phrases kept out
    seed: int = 0
    captions: int = 1500
    batch: int = 250  # captions read at once


def fold_report(config: TrainConfig, settings: FoldSettings, work_dir: Path, embed: Embed) -> dict[str, Any]:
    """Fit a grounder by `config` on the fold's training split (embedded captions cached in `work_dir`)
    and read the fold's captions; returns the shares read right and said, per attribute and both."""
    vocabulary = WORLD.fold(settings.share, settings.seed)
    grounder, fit = train_grounder(config, embed, work_dir, vocabulary)
    rng = np.random.default_rng([settings.seed, 32])
    specs = [SceneSpec.random(rng) for _ in range(settings.captions)]
    texts, kept_out = [], []
    for spec in specs:
        text, parts = caption_parts(spec, rng, split="heldout", vocabulary=vocabulary)
        texts.append(text)
        kept_out.append(heldout_phrases(spec, parts, vocabulary))
    readings = _ground(grounder, texts, embed, settings.batch)
    right = {
        attr: np.array([r[attr].says(getattr(s, attr)) for r, s in zip(readings, specs)])
        for attr in READ
    }
    both = right["subject"] & right["palette"]
    uses = {attr: np.array([attr in k for k in kept_out]) for attr in READ}
    any_kept_out = uses["subject"] | uses["palette"]
    share = lambda hits, mask: round(float(hits[mask].mean()), 4) if mask.any() else None  # noqa: E731
    return {
        "settings": dataclasses.asdict(settings),
        "kept_out_phrases": sum(len(pair[1]) for table in vocabulary.synonyms.values() for pair in table.values()),
        "captions": len(texts),
        "captions_using_kept_out": int(any_kept_out.sum()),
        "right_and_said": {
            "subject": share(right["subject"], uses["subject"]),
            "palette": share(right["palette"], uses["palette"]),
            "both": share(both, any_kept_out),
            "both_all_captions": share(both, np.ones_like(both)),
        },
        "phrases": _phrase_readings(specs, kept_out, readings),
        "fit": fit,
        "example_captions": texts[:4],
    }


def _phrase_readings(
    specs: list[SceneSpec], kept_out: list[dict[str, str]], readings: list[dict[str, Reading]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per kept-out subject or palette phrase, worst first: how many captions used it, the share read right
    and said, and the commonest other reading ("unsaid" where the grounder was too unsure to say it)."""
    misreadings: dict[str, dict[str, list[str | None]]] = {attr: {} for attr in READ}
    for spec, phrases, reading in zip(specs, kept_out, readings, strict=True):
        for attr, phrase in phrases.items():
            if attr in misreadings:
                found = reading[attr]
                if found.says(getattr(spec, attr)):
                    misread = None
                else:
                    misread = found.value if found.said else f"{found.value}, unsaid"
                misreadings[attr].setdefault(phrase, []).append(misread)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for attr, per_phrase in misreadings.items():
        rows = {}
        for phrase, misread in per_phrase.items():
            wrong = collections.Counter(m for m in misread if m is not None).most_common(1)
            rows[phrase] = {
                "captions": len(misread),
                "right": round(misread.count(None) / len(misread), 2),
                "misread_as": wrong[0][0] if wrong else None,
            }
        out[attr] = dict(sorted(rows.items(), key=_worst_first))
    return out


def _worst_first(item: tuple[str, dict[str, Any]]) -> tuple[float, int]:
    """Sort key of a (phrase, row) of `_phrase_readings`: least often read right first, then most used."""
    return item[1]["right"], -item[1]["captions"]


def _ground(grounder: SceneGrounder, texts: list[str], embed: Embed, batch: int) -> list[dict[str, Reading]]:
    """`grounder.ground` in batches (a batch's word runs are embedded together)."""
    return [r for start in range(0, len(texts), batch) for r in grounder.ground(texts[start : start + batch], embed)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `pixelcast eval grounder`."""
    parser.add_argument("--json", type=Path, help="where to write the report")
    parser.add_argument("--work-dir", type=Path, default=Path(".pixelcast/fold"), help="embedded captions (resume)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold and its captions (default 0)")
    parser.add_argument("--captions", type=int, help=f"fold captions read (default {FoldSettings.captions})")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a grounder setting of the recipe, e.g. grounder_steps=500 (repeatable)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: the recipe's quick sizes, 100 captions")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The recipe's `TrainConfig`, with `--quick` sizes and `--set` grounder settings."""
    config = TrainConfig().quick() if args.quick else TrainConfig()
    fields = {f.name for f in dataclasses.fields(TrainConfig) if f.name.startswith("grounder_")}
    changes: dict[str, Any] = {}
    for item in args.set:
        name, sep, text = item.partition("=")
        if not sep or name not in fields:
            raise ValueError(f"--set {item!r}: expected NAME=VALUE with NAME one of {', '.join(sorted(fields))}")
        kind = type(getattr(config, name))
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(f"--set {item!r}: expected true or false")
            changes[name] = text.lower() == "true"
        else:
            try:
                changes[name] = kind(text)
            except ValueError:
                raise ValueError(f"--set {item!r}: expected a number ({kind.__name__})") from None
    return dataclasses.replace(config, **changes)


def main(args: argparse.Namespace) -> int:
    """Entry point of `pixelcast eval grounder`."""
    from models.reporting import write_json

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"pixelcast eval grounder: {error}")
        return 2
    settings = FoldSettings(seed=args.seed)
    if args.quick:
        settings = dataclasses.replace(settings, captions=100)
    if args.captions is not None:
        if args.captions < 1:
            print(f"pixelcast eval grounder: --captions must be at least 1, not {args.captions}")
            return 2
        settings = dataclasses.replace(settings, captions=args.captions)
    started = time.perf_counter()
    text = TextEncoder(cache_size=0)
    report = fold_report(
        config, settings, args.work_dir / ("quick" if args.quick else "full"), text.sentence_embeddings
    )
    report["grounder_settings"] = {k: v for k, v in config.to_dict().items() if k.startswith("grounder_")}
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        write_json(report, args.json)
    read = report["right_and_said"]
    print(
        f"fold: {report['captions_using_kept_out']} of {report['captions']} captions use a kept-out phrase;"
        f" read right and said: subject {read['subject']}, palette {read['palette']}, both {read['both']}"
        f" ({report['seconds']:.0f} s)"
    )
    worst = sorted(
        ((phrase, row) for per_phrase in report["phrases"].values() for phrase, row in per_phrase.items()),
        key=_worst_first,
    )[:WORST_SHOWN]
    shown = (f'"{phrase}" {row["right"]:.0%} of {row["captions"]} ({row["misread_as"]})' for phrase, row in worst)
    print("read worst: " + "; ".join(shown))
    return 0
