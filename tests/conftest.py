"""Shared fixtures: a real Pixelcast server (the CLI, the shipped model, a real Redis) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.server_process import ServerProcess
from models import StreamingEngine
from tests.support.tiny_model import write_tiny_pipeline

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
SERVER_START_SECONDS = 180


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave screenshots and logs for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def tiny_engine(tmp_path_factory: pytest.TempPathFactory) -> StreamingEngine:
    """An engine on a tiny random pipeline (`tests.support.tiny_model`): the real engine code, fast."""
    return StreamingEngine.from_pretrained(write_tiny_pipeline(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture(scope="session")
def server_url(artifacts_dir: Path) -> Iterator[str]:
    """Base URL of `pixelcast serve` run as a user would, with its own data dir; its log is kept.

    Redis is `$REDIS_URL` when set, else the embedded server the CLI starts itself.
    """
    with ServerProcess(start_seconds=SERVER_START_SECONDS, log_path=artifacts_dir / "server.log") as server:
        yield server.url


#: Fixtures that start a Pixelcast server, nginx, coturn or a Redis Cluster: a test using one is slow.
SLOW_FIXTURES = frozenset({"server_url", "deployment", "server_with_turn", "turn_server", "redis_cluster_url"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark as `slow` what starts servers, browsers, clusters or the shipped model: `make test-fast` leaves
    them out (marked by module with `pytestmark`, or here by the fixtures a test uses)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_cluster = callspec is not None and callspec.params.get("redis_client") == "cluster"
        uses = set(getattr(item, "fixturenames", ()))
        if on_cluster or "browser" in item.keywords or SLOW_FIXTURES & uses:
            item.add_marker(pytest.mark.slow)
