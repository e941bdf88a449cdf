"""Signed viewer tokens: the viewer's only credential.

A token is ``<viewer_id>.<kid>.<signature>``: an HMAC-SHA256 of the key id and the viewer id, URL-safe
base64 without padding, under the signing key ``kid`` of a rotating ``KeySet`` (``token-keys.json`` in
the data directory). The newest key signs; a key that a newer one replaced still verifies for
``verify_seconds``, so a returning viewer refreshes its token (``POST /api/viewers`` with the old one)
long before it stops working. ``<viewer_id>.<signature>`` is the older form, from one fixed secret
(``$PIXELCAST_SECRET``, or ``secret.key`` which becomes the key set's first key). Signatures are compared
in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from personalization.errors import PixelcastError
from personalization.keys import is_valid_viewer_id

SECRET_ENV = "PIXELCAST_SECRET"
SECRET_FILE = "secret.key"
ADMIN_TOKEN_ENV = "PIXELCAST_ADMIN_TOKEN"
ADMIN_TOKEN_FILE = "admin.token"
MIN_SECRET_BYTES = 16
KEYS_FILE = "token-keys.json"
ROTATE_SECONDS = 30 * 86400  # a signing key signs this long before a new one takes over
VERIFY_SECONDS = 180 * 86400  # and verifies this long after
_DOMAIN = b"pixelcast.viewer-token.v1\x00"  # binds the MAC to this use of the secret
_DOMAIN_V2 = b"pixelcast.viewer-token.v2\x00"
_MAX_TOKEN_LEN = 256
_LEGACY = ""  # key id of the fixed secret, whose tokens carry no key id


@dataclass(frozen=True)
class TokenKey:
    """One signing key: its id, secret, when it began signing and when a newer key replaced it."""

    kid: str
    secret: bytes
    created: float
    retired: float | None = None

    def sign(self, viewer_id: str) -> str:
        """The signature of ``viewer_id`` under this key."""
        message = _DOMAIN + viewer_id.encode("ascii") if self.kid == _LEGACY else (
            _DOMAIN_V2 + self.kid.encode("ascii") + b"\x00" + viewer_id.encode("ascii")
        )
        mac = hmac.new(self.secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


class KeySet:
    """The signing keys of viewer tokens, newest last; ``rotate`` adds a key and drops expired ones."""

    def __init__(self, keys: Sequence[TokenKey], *, verify_seconds: float = VERIFY_SECONDS) -> None:
        if not keys:
            raise ValueError("a key set needs at least one key")
        for key in keys:
            if len(key.secret) < MIN_SECRET_BYTES:
                raise ValueError(f"token secret must be at least {MIN_SECRET_BYTES} bytes, got {len(key.secret)}")
        self.keys = tuple(keys)
        self.verify_seconds = verify_seconds

    @property
    def current(self) -> TokenKey:
        """The key that signs new tokens."""
        return self.keys[-1]

    def verifying(self, kid: str, now: float | None = None) -> TokenKey | None:
        """The key ``kid`` if it still verifies at ``now``."""
        now = time.time() if now is None else now
        for key in self.keys:
            if key.kid == kid and (key.retired is None or now < key.retired + self.verify_seconds):
                return key
        return None

    def rotate(self, now: float | None = None) -> KeySet:
        """A key set whose new key signs from ``now``; the old ones verify for ``verify_seconds`` more."""
        now = time.time() if now is None else now
        kept = [
            key if key.retired is not None else replace(key, retired=now)
            for key in self.keys
            if key.retired is None or now < key.retired + self.verify_seconds
        ]
        kids = {key.kid for key in kept}
        kid = secrets.token_hex(3)
        while kid in kids:
            kid = secrets.token_hex(3)
        return KeySet([*kept, TokenKey(kid, secrets.token_bytes(32), now)], verify_seconds=self.verify_seconds)

    def to_json(self) -> dict[str, object]:
        """The key set as stored in ``token-keys.json``."""
        keys = []
        for key in self.keys:
            secret = base64.b64encode(key.secret).decode("ascii")
            keys.append({"kid": key.kid, "secret": secret, "created": key.created, "retired": key.retired})
        return {"keys": keys}

    @classmethod
    def from_json(cls, data: dict[str, object], *, verify_seconds: float = VERIFY_SECONDS) -> KeySet:
        """The key set ``to_json`` wrote."""
        keys = [
            TokenKey(str(k["kid"]), base64.b64decode(str(k["secret"])), float(k["created"]), k.get("retired"))
            for k in data["keys"]  # type: ignore[attr-defined]
        ]
        return cls(keys, verify_seconds=verify_seconds)


class TokenSigner:
    """Issue and verify viewer tokens with a ``KeySet`` (or one fixed secret, which never rotates)."""

    def __init__(self, keys: bytes | KeySet) -> None:
        if isinstance(keys, KeySet):
            self.keys = keys
        else:
            if len(keys) < MIN_SECRET_BYTES:
                raise ValueError(f"token secret must be at least {MIN_SECRET_BYTES} bytes, got {len(keys)}")
            self.keys = KeySet([TokenKey(_LEGACY, bytes(keys), 0.0)])

    def issue(self, viewer_id: str) -> str:
        """The token for ``viewer_id`` under the current key (the same id gets the same token until a rotation)."""
        if not is_valid_viewer_id(viewer_id):
            raise ValueError(f"not a valid viewer id: {viewer_id!r}")
        key = self.keys.current
        if key.kid == _LEGACY:
            return f"{viewer_id}.{key.sign(viewer_id)}"
        return f"{viewer_id}.{key.kid}.{key.sign(viewer_id)}"

    def verify(self, token: str | None, now: float | None = None) -> str | None:
        """Return the viewer id a genuine token names, or None for anything else. Never raises."""
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LEN or not token.isascii():
            return None
        parts = token.split(".")
        if len(parts) == 2:
            (viewer_id, signature), kid = parts, _LEGACY
        elif len(parts) == 3:
            viewer_id, kid, signature = parts
            if kid == _LEGACY:
                return None
        else:
            return None
        if not is_valid_viewer_id(viewer_id):
            return None
        key = self.keys.verifying(kid, now)
        if key is None:
            return None
        if not hmac.compare_digest(key.sign(viewer_id).encode("ascii"), signature.encode("ascii")):
            return None
        return viewer_id


def load_or_create_keys(
    data_dir: Path,
    *,
    rotate_seconds: float = ROTATE_SECONDS,
    verify_seconds: float = VERIFY_SECONDS,
    now: float | None = None,
) -> KeySet:
    """The token key set of ``data_dir`` (``token-keys.json``, mode 0600), rotated when its key is due.

    The first call turns an existing ``secret.key`` into the set's first key (its tokens stay valid, and
    it counts as made now, so it does not expire at once), or makes a new one. Blocking file I/O: call it
    at start-up or on a thread.
    """
    now = time.time() if now is None else now
    path = Path(data_dir) / KEYS_FILE
    try:
        keys = KeySet.from_json(json.loads(path.read_text(encoding="ascii")), verify_seconds=verify_seconds)
    except FileNotFoundError:
        keys = first_keys(data_dir, verify_seconds=verify_seconds, now=now)
        _write_keys(path, keys)
    except (ValueError, KeyError, TypeError) as error:
        raise PixelcastError(f"token key file {path} is corrupt: {error}") from error
    if now - keys.current.created >= rotate_seconds:
        keys = keys.rotate(now)
        _write_keys(path, keys)
    return keys


def first_keys(data_dir: Path, *, verify_seconds: float = VERIFY_SECONDS, now: float | None = None) -> KeySet:
    """A new key set: the data dir's ``secret.key`` as its key (so its tokens stay valid), else a random key."""
    now = time.time() if now is None else now
    legacy = Path(data_dir) / SECRET_FILE
    if legacy.exists():
        return KeySet([TokenKey(_LEGACY, _read_secret(legacy), now)], verify_seconds=verify_seconds)
    return KeySet([TokenKey(secrets.token_hex(3), secrets.token_bytes(32), now)], verify_seconds=verify_seconds)


def pinned_secret(data_dir: Path) -> bytes | None:
    """The one fixed secret ``$PIXELCAST_SECRET`` pins (no rotation), or None: keys come from a key set."""
    if os.environ.get(SECRET_ENV):
        return load_or_create_secret(data_dir)
    return None


def _write_keys(path: Path, keys: KeySet) -> None:
    """Write the key set atomically (a private temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            json.dump(keys.to_json(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
