"""The experiments API on an inline app: real Redis, real token signer, no model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from personalization.errors import PixelcastError
from personalization.experimenting import Experiments
from personalization.tokens import TokenSigner, load_or_create_admin_token
from streamer import experiments_api
from streamer.config import ServerConfig
from streamer.server import _http_error, _pixelcast_error
from tests.personalization.conftest import redis_client, redis_cluster_url  # noqa: F401  (a real Redis)

ADMIN = {"Authorization": "Bearer admin-token-for-tests-0123456789"}
DEFINITION = {
    "key": "ab1",
    "variations": [
        {"id": "control", "policy": "static", "weight": 0.5},
        {"id": "treatment", "policy": "thompson", "weight": 0.5, "settings": {"steps": 2}},
    ],
    "metrics": [{"name": "likes_per_minute", "goal": "increase"}],
}


@pytest.fixture
async def client(redis_client: Any) -> Any:  # noqa: F811 - the fixture imported above
    handlers = {HTTPException: _http_error, PixelcastError: _pixelcast_error}
    app = Starlette(routes=experiments_api.routes, exception_handlers=handlers)
    signer = TokenSigner(b"0123456789abcdef0123456789abcdef")
    app.state.services = SimpleNamespace(
        signer=signer,
        experiments=Experiments(redis_client),
        admin_token=ADMIN["Authorization"].split()[1],
        config=ServerConfig(),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        http.viewer_token = signer.issue("viewer1")  # type: ignore[attr-defined]
        yield http


async def test_admin_endpoints_refuse_viewer_tokens_and_no_token(client: Any) -> None:
    for method, path in [("GET", "/api/experiments"), ("POST", "/api/experiments"), ("GET", "/api/experiments/ab1"),
                         ("POST", "/api/experiments/ab1/stop"), ("GET", "/api/experiments/ab1/results")]:
        assert (await client.request(method, path)).status_code == 401
        viewer = {"Authorization": f"Bearer {client.viewer_token}"}
        response = await client.request(method, path, headers=viewer)
        assert response.status_code == 403 and "admin" in response.json()["error"]
        assert (await client.request(method, path, headers={"Authorization": "Bearer wrong"})).status_code == 401


async def test_define_list_read_stop(client: Any) -> None:
    created = await client.post("/api/experiments", json=DEFINITION, headers=ADMIN)
    assert created.status_code == 201 and created.json()["status"] == "running"
    assert created.headers["location"] == "/api/experiments/ab1"
    listed = (await client.get("/api/experiments", headers=ADMIN)).json()["experiments"]
    assert [e["key"] for e in listed] == ["ab1"]
    assert (await client.get("/api/experiments/ab1", headers=ADMIN)).json()["variations"][1]["settings"] == {"steps": 2}
    results = (await client.get("/api/experiments/ab1/results", headers=ADMIN)).json()
    assert results["exposures"] == 0 and results["srm"]["warning"] is False
    stopped = await client.post("/api/experiments/ab1/stop", headers=ADMIN)
    assert stopped.json()["status"] == "stopped"
    assert (await client.get("/api/experiments/nope", headers=ADMIN)).status_code == 404
    assert (await client.get("/api/experiments/nope/results", headers=ADMIN)).status_code == 404


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"key": "x", "variations": [], "extra": 1}', "extra"),
        (b'{"key": "x", "variations": [{"id": "a", "policy": "static", "weight": 0.7},'
         b' {"id": "b", "policy": "static", "weight": 0.7}]}', "variations.weight"),
        (b'{"key": "x", "variations": [{"id": "a", "policy": "static", "weight": 0.5},'
         b' {"id": "b", "policy": "bandit9000", "weight": 0.5}]}', "variations[1].policy"),
        (b'{"key": "x", "condition": {"$where": "1"}, "variations": [{"id": "a", "policy": "static", "weight": 0.5},'
         b' {"id": "b", "policy": "static", "weight": 0.5}]}', "condition.$where"),
    ],
)
async def test_bad_bodies_get_400_naming_the_problem(client: Any, body: bytes, needle: str) -> None:
    response = await client.post("/api/experiments", content=body, headers=ADMIN)
    assert response.status_code == 400 and needle in response.json()["error"]


async def test_duplicate_key_and_oversized_body(client: Any) -> None:
    assert (await client.post("/api/experiments", json=DEFINITION, headers=ADMIN)).status_code == 201
    again = await client.post("/api/experiments", json=DEFINITION, headers=ADMIN)
    assert again.status_code == 400 and again.json()["error"].startswith("key:")
    huge = await client.post("/api/experiments", content=b"{" + b" " * 100_000 + b"}", headers=ADMIN)
    assert huge.status_code == 413


def test_admin_token_is_created_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIXELCAST_ADMIN_TOKEN", raising=False)
    token, created = load_or_create_admin_token(tmp_path)
    assert created and len(token) >= 32 and "." not in token
    assert load_or_create_admin_token(tmp_path) == (token, False)
    monkeypatch.setenv("PIXELCAST_ADMIN_TOKEN", "an-admin-token-from-the-environment")
    assert load_or_create_admin_token(tmp_path) == ("an-admin-token-from-the-environment", False)
