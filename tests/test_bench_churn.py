"""`pixelcast bench churn` with a small N: the server is left as it was found, within the stated bounds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.churn import late_growth

pytestmark = pytest.mark.slow  # runs the churn benchmark against a server

CYCLES = 20


def test_churn_leaves_no_tasks_threads_fds_or_immortal_keys(tmp_path: Path) -> None:
    report_path = tmp_path / "churn.json"
    command = [sys.executable, "-m", "streamer.cli", "bench", "churn", "--cycles", str(CYCLES), "--json", report_path]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert report_path.exists(), run.stdout[-2000:] + run.stderr[-3000:]
    report = json.loads(report_path.read_text())
    growth, bounds = report["growth"], report["bounds"]
    assert report["within_bounds"], f"past the bounds: {growth} > {bounds}"
    assert run.returncode == 0
    assert growth["sessions"] == 0, "a viewer that left without DELETE kept its session"
    assert growth["anonymous_keys_without_ttl"] == 0
    assert report["anonymous_viewers_added"] == CYCLES, "each cycle was a new anonymous viewer, kept (with a TTL)"


def test_late_growth_tells_a_leak_from_memory_that_levels_off() -> None:
    leveling = [(0, 1000.0), (50, 1060.0), (100, 1080.0), (150, 1082.0), (200, 1083.0)]
    leaking = [(0, 1000.0), (50, 1030.0), (100, 1060.0), (150, 1090.0), (200, 1120.0)]
    assert late_growth(leveling) == 3.0
    assert late_growth(leaking) == 60.0
    assert late_growth([(0, 1000.0)]) is None
