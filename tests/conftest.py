"""Shared fixtures: a real Pixelcast server (the CLI, the shipped model, a real Redis) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.server_process import ServerProcess

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
SERVER_START_SECONDS = 180


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave screenshots and logs for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def server_url(artifacts_dir: Path) -> Iterator[str]:
    """Base URL of `pixelcast serve` run as a user would, with its own data dir; its log is kept.

    Redis is `$REDIS_URL` when set, else the embedded server the CLI starts itself.
    """
    with ServerProcess(start_seconds=SERVER_START_SECONDS, log_path=artifacts_dir / "server.log") as server:
        yield server.url
