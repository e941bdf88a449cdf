"""Schema of client -> server control messages (data channel ``control`` and HTTP).

    {"type": "steer", "text": "slower, more ocean, at night"}
    {"type": "feedback", "kind": "like" | "skip" | "dwell", "segment_id": 12, "seconds": 3.5}

Unknown extra fields are ignored, so newer clients keep working against this server.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from personalization.errors import InvalidMessage

FeedbackKind = Literal["like", "skip", "dwell"]
FEEDBACK_KINDS: tuple[str, ...] = get_args(FeedbackKind)

MAX_MESSAGE_BYTES = 4096  # 4 KiB of raw JSON per message
MAX_STEER_CHARS = 500
MAX_SECONDS = 86_400.0  # one day: longer dwell times are a client bug, not a viewer
MAX_SEGMENT_ID = 2**63 - 1  # fits a Redis integer


@dataclass(frozen=True)
class Steer:
    """The viewer asked for something in words ("slower, more ocean, at night")."""

    text: str


@dataclass(frozen=True)
class Feedback:
    """Implicit or explicit feedback on a segment: a like, a skip, or seconds of dwell."""

    kind: FeedbackKind
    segment_id: int | None = None
    seconds: float | None = None


ControlMessage = Steer | Feedback


@dataclass(frozen=True)
class MessageLimits:
    """How large a control message and a steer's text may be (`pixelcast serve --max-message-bytes`, ...)."""

    max_bytes: int = MAX_MESSAGE_BYTES
    max_steer_chars: int = MAX_STEER_CHARS


def _reject_constant(name: str) -> Any:
    raise InvalidMessage(f"message is not valid JSON: {name} is not allowed")


def parse_control_message(raw: str | bytes | dict[str, Any], limits: MessageLimits = MessageLimits()) -> ControlMessage:
    """Parse and validate one client message; raise ``InvalidMessage`` naming the problem."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        if len(raw) > limits.max_bytes:
            raise InvalidMessage(f"message is too large ({len(raw)} bytes; at most {limits.max_bytes})")
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidMessage("message is not valid UTF-8") from None
    if isinstance(raw, str):
        size = len(raw.encode("utf-8", errors="surrogatepass"))
        if size > limits.max_bytes:
            raise InvalidMessage(f"message is too large ({size} bytes; at most {limits.max_bytes})")
        try:
            obj = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, InvalidMessage):
                raise
            raise InvalidMessage("message is not valid JSON") from None
    else:
        obj = raw
    if not isinstance(obj, dict):
        raise InvalidMessage(f"message must be a JSON object, got {_json_type(obj)}")
    if "type" not in obj:
        raise InvalidMessage('message has no "type" (expected "steer" or "feedback")')
    kind = obj["type"]
    if kind == "steer":
        return _parse_steer(obj, limits.max_steer_chars)
    if kind == "feedback":
        return _parse_feedback(obj)
    raise InvalidMessage(f'unknown message type {_show(kind)} (expected "steer" or "feedback")')


def _parse_steer(obj: dict[str, Any], max_chars: int) -> Steer:
    if "text" not in obj:
        raise InvalidMessage('steer message has no "text"')
    text = obj["text"]
    if not isinstance(text, str):
        raise InvalidMessage(f'steer "text" must be a string, got {_json_type(text)}')
    text = text.strip()
    if not text:
        raise InvalidMessage('steer "text" is empty')
    if len(text) > max_chars:
        raise InvalidMessage(f'steer "text" is too long ({len(text)} characters; at most {max_chars})')
    return Steer(text=text)


def _parse_feedback(obj: dict[str, Any]) -> Feedback:
    kind = obj.get("kind")
    if kind not in FEEDBACK_KINDS:
        what = 'has no "kind"' if "kind" not in obj else f'has unknown "kind" {_show(kind)}'
        raise InvalidMessage(f'feedback message {what} (expected "like", "skip" or "dwell")')

    segment_id = obj.get("segment_id")
    if segment_id is not None and (
        not isinstance(segment_id, int) or isinstance(segment_id, bool) or not 0 <= segment_id <= MAX_SEGMENT_ID
    ):
        raise InvalidMessage(f'feedback "segment_id" must be a non-negative integer, got {_show(segment_id)}')

    seconds = obj.get("seconds")
    if seconds is not None:
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
            raise InvalidMessage(f'feedback "seconds" must be a number, got {_json_type(seconds)}')
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds < 0:
            raise InvalidMessage(f'feedback "seconds" must be a finite non-negative number, got {seconds!r}')
        if seconds > MAX_SECONDS:
            raise InvalidMessage(f'feedback "seconds" is too large ({seconds!r}; at most {MAX_SECONDS:g})')
    elif kind == "dwell":
        raise InvalidMessage('dwell feedback needs "seconds" (a finite non-negative number)')
    return Feedback(kind=kind, segment_id=segment_id, seconds=seconds)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: object) -> str:
    """A short rendering of a client value for an error message."""
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else _json_type(value)
    return text if len(text) <= 40 else text[:37] + "..."
