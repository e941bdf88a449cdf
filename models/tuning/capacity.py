"""What the engine can generate: frames per second by batch size and steps, measured at start-up."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable

from models.interface import FrameEngine
from models.tuning.speed import measure_fps

logger = logging.getLogger(__name__)

CALIBRATION_BATCHES = (1, 2, 3, 4, 6, 8, 12, 16)


class CapacityModel:
    """Engine frames/s per `(batch, steps)`, from timing the real engine once at start-up.

    Frames are cheaper in bigger batches, so a throughput measured while serving one viewer says
    little about serving four; this table answers for any batch size (per-frame cost is interpolated
    between measured sizes and held flat beyond the largest).
    """

    def __init__(self, fps: dict[tuple[int, int], float]) -> None:
        if not fps:
            raise ValueError("a capacity model needs at least one measurement")
        self._fps = dict(fps)

    @classmethod
    def calibrate(cls, engine: FrameEngine, max_batch: int, steps: Iterable[int]) -> CapacityModel:
        """Time the engine as the server runs it (decode beside denoise) at a few batch sizes up to `max_batch`."""
        batches = [b for b in CALIBRATION_BATCHES if b < max_batch] + [max_batch]
        table: dict[tuple[int, int], float] = {}
        for s in sorted(set(steps)):
            best = 0.0
            for b in batches:
                # a bigger batch could always run as smaller ones, so a dip is timing noise
                best = max(best, measure_fps(engine, b, s, calls=4, pipelined=True))
                table[(b, s)] = best
        logger.info(
            "engine capacity: %s",
            ", ".join(f"{fps:.0f} frames/s at batch {b}, {s} step(s)" for (b, s), fps in sorted(table.items())),
        )
        return cls(table)

    def fps(self, batch: int, steps: int) -> float:
        """Engine frames/s at `batch` streams and `steps` steps (nearest measured step count)."""
        step_counts = sorted({s for _, s in self._fps})
        steps = min(step_counts, key=lambda s: (abs(s - steps), -s))
        sizes = sorted(b for b, s in self._fps if s == steps)
        seconds = {b: 1.0 / self._fps[(b, steps)] for b in sizes}  # per frame
        if batch <= sizes[0]:
            return 1.0 / seconds[sizes[0]]
        if batch >= sizes[-1]:
            return 1.0 / seconds[sizes[-1]]
        i = bisect.bisect_left(sizes, batch)
        lo, hi = sizes[i - 1], sizes[i]
        t = (batch - lo) / (hi - lo)
        return 1.0 / ((1 - t) * seconds[lo] + t * seconds[hi])
