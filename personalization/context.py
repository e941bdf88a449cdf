"""Viewing context for the contextual policy: time-of-day bucket and device class."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

TIMES_OF_DAY: tuple[str, ...] = ("night", "morning", "afternoon", "evening")
"""Hours 0-5, 6-11, 12-17, 18-23 (the viewer's local time where known, else the server's)."""

DEVICES: tuple[str, ...] = ("desktop", "mobile", "tv", "unknown")

_BUCKET_RE = re.compile(r"[a-z0-9_]{1,32}\.[a-z0-9_]{1,32}")


@dataclass(frozen=True)
class Context:
    """Where and when a segment is watched; ``bucket`` names its posteriors (``"evening.mobile"``)."""

    time_of_day: str = "afternoon"
    device: str = "unknown"

    def __post_init__(self) -> None:
        if self.time_of_day not in TIMES_OF_DAY:
            raise ValueError(f"unknown time of day {self.time_of_day!r}; expected one of {', '.join(TIMES_OF_DAY)}")
        if self.device not in DEVICES:
            raise ValueError(f"unknown device class {self.device!r}; expected one of {', '.join(DEVICES)}")

    @property
    def bucket(self) -> str:
        """The context bucket, ``<time_of_day>.<device>``."""
        return f"{self.time_of_day}.{self.device}"

    @classmethod
    def at(cls, when: datetime.datetime | None = None, device: str = "unknown") -> Context:
        """The context at ``when`` (default: now, local time) on a device class."""
        hour = (when or datetime.datetime.now()).hour
        return cls(TIMES_OF_DAY[hour // 6], device)


def is_valid_bucket(bucket: str) -> bool:
    """Whether ``bucket`` is safe to use inside a Redis hash field name."""
    return _BUCKET_RE.fullmatch(bucket) is not None


def device_class(user_agent: str | None) -> str:
    """A coarse device class from a User-Agent header: ``tv``, ``mobile``, ``desktop`` or ``unknown``."""
    ua = (user_agent or "").lower()
    if not ua:
        return "unknown"
    if any(word in ua for word in ("smart-tv", "smarttv", "googletv", "appletv", "hbbtv", "tizen", "webos", "roku")):
        return "tv"
    if any(word in ua for word in ("mobile", "android", "iphone", "ipad", "ipod")):
        return "mobile"
    return "desktop"
