"""The engine's precision choice, kept between server starts on the same machine and model.

Timing float32 against bfloat16 and frozen graphs at every batch size is most of start-up (a reused
choice only traces the frozen graphs it chose). Its answer depends
only on the machine, torch, the thread count, the model's weights and the batch sizes, so it is saved
under the data folder with those facts and reused while they all match; anything else, or
`--retime-precision`, times again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from models.engine import StreamingEngine
from models.reporting import machine
from models.tuning.choice import adopt_precision, choose_precision, precision_choice
from models.tuning.frozen import TraceMismatch

log = logging.getLogger(__name__)

PRECISION_FILE = "precision.json"
WEIGHT_PARTS = ("unet", "vae")


def machine_key(engine: StreamingEngine, model_path: Path, batches: Iterable[int]) -> dict[str, Any]:
    """What a precision choice depends on: the machine, torch, threads, device, the weights and batch sizes."""
    weights = sorted(
        (str(f.relative_to(model_path)), f.stat().st_size, f.stat().st_mtime_ns)
        for part in WEIGHT_PARTS
        for f in (model_path / part).rglob("*")
        if f.is_file()
    )
    facts = {name: value for name, value in machine().items() if name != "date"}
    return {
        **facts,
        "device": str(engine.device),
        "model": str(model_path.resolve()),
        "weights": [list(w) for w in weights],
        "batches": sorted(set(batches)),
    }


def load_or_choose_precision(
    engine: StreamingEngine, model_path: Path, batches: Iterable[int], data_dir: Path, *, retime: bool = False
) -> tuple[dict[str, list[int]], bool]:
    """The engine's `precision`, reused from `data_dir` where saved for this very key, else timed and saved.

    Returns it and whether it was reused. Runs the engine, so call it where the engine's work runs.
    """
    batches = sorted(set(batches))
    key = machine_key(engine, model_path, batches)
    path = data_dir / PRECISION_FILE
    if not retime:
        saved = _read(path)
        if saved is not None and saved.get("key") == key:
            log.info("reusing the precision choice saved in %s (tracing the frozen graphs it chose)", path)
            try:
                return adopt_precision(engine, saved["choice"]), True
            except (ValueError, KeyError, TypeError, TraceMismatch) as error:
                log.warning("not reusing the saved precision choice (%s); timing again", error)
    sizes = f"batch size {batches[0]}" if len(batches) == 1 else f"batch sizes {batches[0]}-{batches[-1]}"
    log.info("timing float32 against bfloat16 at %s; the choice is saved in %s, so later starts skip this", sizes, path)
    precision = choose_precision(engine, batches)
    record = {"key": key, "choice": precision_choice(engine), "measured": datetime.now(timezone.utc).isoformat()}
    try:
        path.write_text(json.dumps(record, indent=2) + "\n")
    except OSError as error:  # a read-only data folder costs the next start its timing, nothing else
        log.warning("could not save the precision choice to %s: %s", path, error)
    return precision, False


def _read(path: Path) -> dict[str, Any] | None:
    """The saved record, or None where there is none or it cannot be read."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("ignoring %s: %s", path, error)
        return None
    return record if isinstance(record, dict) else None
