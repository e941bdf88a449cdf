"""Viewer tokens and the server secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from personalization.tokens import TokenSigner, load_or_create_secret

SECRET = b"0123456789abcdef0123456789abcdef"


def test_issue_and_verify() -> None:
    signer = TokenSigner(SECRET)
    token = signer.issue("AbC-_123xyz")
    assert token.startswith("AbC-_123xyz.")
    assert all(c.isalnum() or c in "-_." for c in token)  # URL-safe
    assert signer.verify(token) == "AbC-_123xyz"
    assert signer.issue("AbC-_123xyz") == token  # returning viewers keep their token


def test_tampered_tokens_are_rejected() -> None:
    signer = TokenSigner(SECRET)
    token = signer.issue("viewer1")
    viewer_id, _, signature = token.partition(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    assert signer.verify(f"{viewer_id}.{flipped}") is None
    assert signer.verify(f"viewer2.{signature}") is None  # signature moved to another viewer
    assert signer.verify(token + "x") is None
    assert signer.verify(token[:-1]) is None
    assert TokenSigner(b"another-secret-of-enough-length").verify(token) is None


@pytest.mark.parametrize(
    "garbage",
    ["", ".", "viewer1", "viewer1.", ".sig", "a.b.c", "{v}.abc", "é.abc", "x" * 10_000, None, b"viewer1.abc", 42],
)
def test_garbage_tokens_never_raise(garbage: object) -> None:
    assert TokenSigner(SECRET).verify(garbage) is None  # type: ignore[arg-type]


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        TokenSigner(b"short")


def test_issue_refuses_bad_viewer_id() -> None:
    with pytest.raises(ValueError):
        TokenSigner(SECRET).issue("has.dot")


def test_secret_is_created_once_and_persisted(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIXELCAST_SECRET", raising=False)
    first = load_or_create_secret(data_dir)
    path = data_dir / "secret.key"
    assert len(first) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret(data_dir) == first  # a restart keeps the secret...
    token = TokenSigner(first).issue("viewer1")
    assert TokenSigner(load_or_create_secret(data_dir)).verify(token) == "viewer1"  # ...and tokens stay valid
    assert [p.name for p in data_dir.iterdir()] == ["secret.key"]  # no temporary file left behind


def test_secret_in_new_nested_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIXELCAST_SECRET", raising=False)
    assert load_or_create_secret(tmp_path / "a" / "b") == load_or_create_secret(tmp_path / "a" / "b")


def test_env_secret_wins(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELCAST_SECRET", "from-the-environment-0123456789")
    assert load_or_create_secret(data_dir) == b"from-the-environment-0123456789"
    assert not (data_dir / "secret.key").exists()
