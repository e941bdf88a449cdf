"""Viewer tokens and the server secret."""

from __future__ import annotations

import hmac
import os
import stat
from pathlib import Path

import pytest

from personalization import tokens
from personalization.tokens import KEYS_FILE, TokenSigner, load_or_create_keys, load_or_create_secret

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


DAY = 86400.0


def test_rotation_keeps_old_tokens_valid_until_their_key_expires(data_dir: Path) -> None:
    keys = load_or_create_keys(data_dir, rotate_seconds=30 * DAY, verify_seconds=90 * DAY, now=0.0)
    assert stat.S_IMODE(os.stat(data_dir / KEYS_FILE).st_mode) == 0o600
    old = TokenSigner(keys).issue("viewer1")
    assert old.count(".") == 2  # <viewer>.<kid>.<signature>
    same = load_or_create_keys(data_dir, rotate_seconds=30 * DAY, verify_seconds=90 * DAY, now=10 * DAY)
    assert TokenSigner(same).issue("viewer1") == old  # not due yet: a restart keeps the key

    rotated = load_or_create_keys(data_dir, rotate_seconds=30 * DAY, verify_seconds=90 * DAY, now=30 * DAY)
    signer = TokenSigner(rotated)
    new = signer.issue("viewer1")
    assert new != old and new.split(".")[1] != old.split(".")[1]
    assert signer.verify(old, now=31 * DAY) == "viewer1"  # the retired key still verifies...
    assert signer.verify(new, now=31 * DAY) == "viewer1"
    assert signer.verify(old, now=120 * DAY + 1) is None  # ...until 90 days after it was replaced
    assert signer.verify(new, now=120 * DAY + 1) == "viewer1"
    # a later rotation drops the expired key from the file
    later = load_or_create_keys(data_dir, rotate_seconds=30 * DAY, verify_seconds=90 * DAY, now=121 * DAY)
    assert old.split(".")[1] not in {k.kid for k in later.keys}


def test_the_old_fixed_secret_becomes_the_first_key(data_dir: Path) -> None:
    legacy = TokenSigner(load_or_create_secret(data_dir)).issue("viewer1")
    keys = load_or_create_keys(data_dir, rotate_seconds=30 * DAY, verify_seconds=90 * DAY, now=1000 * DAY)
    assert TokenSigner(keys).verify(legacy, now=1000 * DAY) == "viewer1"  # counted from the upgrade, not before
    rotated = load_or_create_keys(data_dir, rotate_seconds=30 * DAY, verify_seconds=90 * DAY, now=1030 * DAY)
    assert TokenSigner(rotated).verify(legacy, now=1100 * DAY) == "viewer1"
    assert TokenSigner(rotated).verify(legacy, now=1121 * DAY) is None
    assert TokenSigner(rotated).verify(legacy.replace(".", ".x.", 1)) is None


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    signer = TokenSigner(SECRET)
    token = signer.issue("viewer1")
    assert signer.verify(token) == "viewer1" and signer.verify(token[:-2] + "xx") is None
    assert len(compared) == 2
