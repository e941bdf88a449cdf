"""`pixelcast bench grounding`: how long the shipped grounder takes to read a viewer's steer.

The server's steer reader (`streamer.steering`) has the grounder read each steer the viewer sends.
Reading it embeds the steer and every run of up to five of its words with MiniLM: dozens of short
texts for a long steer. MiniLM pads each batch to its longest text, so the word runs are embedded in small batches of
similar length; the report sets that against one batch holding them all, in interleaved rounds of
one process, as p50/p95 latency and a ratio. A third contender is what serving uses: small batches
with each run's embedding cached (`PromptConditioner.run_embeddings`), emptied at the start of each
round, so a steer reuses only the runs the round's earlier steers had.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Any

from models.engine import StreamingEngine, default_model_path

from .report import machine, percentiles_ms, shown_path, write_json

STEERS = (
    "slower please, and much more of the ocean with pink dawn light",
    "make it brighter and busier, like a city at noon with rain",
    "more trees",
    "I want mountains in the snow, calm, no camera movement",
    "something warmer, a desert as the sun goes down",
    "less fog, more stars",
)
"""Viewers' steers."""

ONE_BATCH = 1024
"""A chunk size no steer's word runs reach: every text of a prompt in one padded batch."""


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time `SceneGrounder.expand` on every steer, for the shipped chunking and for one batch."""
    model = args.model or default_model_path()
    engine = StreamingEngine.from_pretrained(model, steps=1)
    if engine.prompts.grounder is None:
        raise SystemExit(f"{shown_path(model)} has no grounder to measure")
    grounder, encoder = engine.prompts.grounder, engine.prompts.text_encoder
    prompts = list(STEERS)
    contenders = {
        "small_batches": encoder.sentence_embeddings,
        "one_batch": functools.partial(encoder.sentence_embeddings, chunk=ONE_BATCH),
        "cached_runs": engine.prompts.run_embeddings,
    }
    for embed in contenders.values():  # warm-up: first calls allocate
        grounder.expand(prompts[0], embed)
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    read: dict[str, list[str]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        engine.prompts.run_embeddings.cache.clear()
        for prompt in prompts:
            for name, embed in contenders.items():
                started = time.perf_counter()
                grounded = grounder.expand(prompt, embed)
                seconds[name].append(time.perf_counter() - started)
                read[name].append(grounded)
    results = {name: percentiles_ms(times) for name, times in seconds.items()}
    return {
        "benchmark": "grounding",
        "machine": machine(),
        "model": shown_path(model),
        "steers": len(prompts),
        "rounds": args.rounds,
        "word_runs_per_prompt": [len(grounder.features([p], encoder.sentence_embeddings).runs) for p in prompts],
        "results": results,
        "ratio_p50_one_batch_vs_small_batches": round(
            results["one_batch"]["p50_ms"] / results["small_batches"]["p50_ms"], 3
        ),
        "ratio_p50_small_batches_vs_cached_runs": round(
            results["small_batches"]["p50_ms"] / results["cached_runs"]["p50_ms"], 3
        ),
        "same_prompts": read["small_batches"] == read["one_batch"] == read["cached_runs"],
    }


def grounder_arguments(parser: argparse.ArgumentParser) -> None:
    """`--model` and `--json`, the flags of every benchmark of the grounder."""
    parser.add_argument("--model", type=Path, help="pipeline folder with a grounder (default: the shipped model)")
    parser.add_argument("--json", type=Path, required=True, help="where to write the report")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `pixelcast bench grounding`."""
    grounder_arguments(parser)
    parser.add_argument("--rounds", type=int, default=5, help="times each steer is grounded per contender (default 5)")


def main(args: argparse.Namespace) -> int:
    """Entry point of `pixelcast bench grounding`."""
    report = run(args)
    write_json(report, args.json)
    small, one = report["results"]["small_batches"], report["results"]["one_batch"]
    cached = report["results"]["cached_runs"]
    print(
        f"grounding a steer: p50 {small['p50_ms']:.0f} ms in small batches, {one['p50_ms']:.0f} ms in one batch "
        f"(x{report['ratio_p50_one_batch_vs_small_batches']}), {cached['p50_ms']:.0f} ms with cached runs "
        f"(x{report['ratio_p50_small_batches_vs_cached_runs']} faster); same prompts: {report['same_prompts']}"
    )
    return 0 if report["same_prompts"] else 1
