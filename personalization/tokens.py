"""Signed viewer tokens: the viewer's only credential.

A token is ``<viewer_id>.<signature>`` where the signature is an HMAC-SHA256 of the viewer id,
URL-safe base64 without padding. Tokens do not expire: a returning viewer keeps its token, as long
as the server keeps its secret (see ``load_or_create_secret``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from personalization.errors import PixelcastError
from personalization.keys import is_valid_viewer_id

SECRET_ENV = "PIXELCAST_SECRET"
SECRET_FILE = "secret.key"
ADMIN_TOKEN_ENV = "PIXELCAST_ADMIN_TOKEN"
ADMIN_TOKEN_FILE = "admin.token"
MIN_SECRET_BYTES = 16
_DOMAIN = b"pixelcast.viewer-token.v1\x00"  # binds the MAC to this use of the secret
_MAX_TOKEN_LEN = 256


class TokenSigner:
    """Issue and verify viewer tokens with one server secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"token secret must be at least {MIN_SECRET_BYTES} bytes, got {len(secret)}")
        self._secret = bytes(secret)

    def _sign(self, viewer_id: str) -> str:
        mac = hmac.new(self._secret, _DOMAIN + viewer_id.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def issue(self, viewer_id: str) -> str:
        """Return the token for ``viewer_id`` (deterministic: the same id always gets the same token)."""
        if not is_valid_viewer_id(viewer_id):
            raise ValueError(f"not a valid viewer id: {viewer_id!r}")
        return f"{viewer_id}.{self._sign(viewer_id)}"

    def verify(self, token: str | None) -> str | None:
        """Return the viewer id a genuine token names, or None for anything else. Never raises."""
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LEN or not token.isascii():
            return None
        viewer_id, dot, signature = token.rpartition(".")
        if not dot or not is_valid_viewer_id(viewer_id):
            return None
        expected = self._sign(viewer_id)
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
            return None
        return viewer_id


def load_or_create_secret(data_dir: Path) -> bytes:
    """The token secret: ``$PIXELCAST_SECRET`` if set, else ``data_dir/secret.key``, created on first use.

    The file is created with mode 0600 and written atomically (a temporary file hard-linked into
    place), so two processes starting together agree on one secret and never read a partial file.
    """
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        secret = from_env.encode("utf-8")
        if len(secret) < MIN_SECRET_BYTES:
            raise PixelcastError(f"${SECRET_ENV} must be at least {MIN_SECRET_BYTES} bytes long")
        return secret
    return _load_or_create(Path(data_dir) / SECRET_FILE)[0]


def load_or_create_admin_token(data_dir: Path) -> tuple[str, bool]:
    """The admin token of the experiments API: ``$PIXELCAST_ADMIN_TOKEN``, else ``data_dir/admin.token``.

    Returns ``(token, created)``; ``created`` is True only for the start that made the file, so the
    server prints a new token exactly once. Viewer tokens are never admin tokens (another secret, no dot).
    """
    from_env = os.environ.get(ADMIN_TOKEN_ENV)
    if from_env:
        if len(from_env.encode("utf-8")) < MIN_SECRET_BYTES:
            raise PixelcastError(f"${ADMIN_TOKEN_ENV} must be at least {MIN_SECRET_BYTES} bytes long")
        return from_env, False
    secret, created = _load_or_create(Path(data_dir) / ADMIN_TOKEN_FILE)
    return secret.decode("ascii"), created


def _load_or_create(path: Path) -> tuple[bytes, bool]:
    """The secret in ``path``, created (mode 0600, atomically) when missing; and whether this call created it."""
    try:
        return _read_secret(path), False
    except FileNotFoundError:
        pass
    data_dir = path.parent
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = data_dir / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    created = False
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race: use its secret
            os.link(tmp, path)
            created = True
    finally:
        tmp.unlink(missing_ok=True)
    return _read_secret(path), created


def _read_secret(path: Path) -> bytes:
    secret = path.read_bytes().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise PixelcastError(f"token secret file {path} is corrupt (shorter than {MIN_SECRET_BYTES} bytes)")
    return secret
