"""Common parts of every benchmark report: the machine, percentiles, writing JSON."""

from __future__ import annotations

import numpy as np

from models.reporting import machine, shown_path, write_json

__all__ = ["machine", "percentiles_ms", "shown_path", "write_json"]


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    """p50 and p95 of durations, in milliseconds."""
    if not seconds:
        return {"p50_ms": float("nan"), "p95_ms": float("nan")}
    values = np.asarray(seconds) * 1000.0
    return {"p50_ms": round(float(np.percentile(values, 50)), 3), "p95_ms": round(float(np.percentile(values, 95)), 3)}
