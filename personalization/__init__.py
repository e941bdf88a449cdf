"""Pixelcast personalization: viewers, profiles and feedback events in Redis (embedded by default).

This package never imports torch or aiortc.
"""

from personalization.errors import EmbeddedRedisError, InvalidMessage, PixelcastError, UnknownViewer
from personalization.events import EventLog
from personalization.messages import ControlMessage, Feedback, FeedbackKind, Steer, parse_control_message
from personalization.redis_server import EmbeddedRedis
from personalization.store import Store, default_data_dir, open_store
from personalization.tokens import TokenSigner, load_or_create_secret
from personalization.viewers import ViewerRegistry

__all__ = [
    "ControlMessage",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "EventLog",
    "Feedback",
    "FeedbackKind",
    "InvalidMessage",
    "PixelcastError",
    "Steer",
    "Store",
    "TokenSigner",
    "UnknownViewer",
    "ViewerRegistry",
    "default_data_dir",
    "load_or_create_secret",
    "open_store",
    "parse_control_message",
]
