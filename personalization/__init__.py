"""Pixelcast personalization: viewers, profiles, feedback events, wishes and policies (Redis, embedded by default).

This package never imports torch or aiortc.
"""

from personalization.consumer import EventConsumer
from personalization.context import Context, device_class
from personalization.errors import EmbeddedRedisError, InvalidMessage, PixelcastError, UnknownViewer
from personalization.events import EventLog
from personalization.messages import ControlMessage, Feedback, FeedbackKind, Steer, parse_control_message
from personalization.personalizer import Personalizer
from personalization.policies import POLICIES, Policy, get_policy, policy_for_viewer
from personalization.profiles import Profile, ProfileState, ProfileStore
from personalization.redis_server import EmbeddedRedis
from personalization.store import Store, default_data_dir, open_store
from personalization.tokens import TokenSigner, load_or_create_secret
from personalization.viewers import ViewerRegistry
from personalization.wishes import SimilarityNamer, SteerReader, Wishes

__all__ = [
    "POLICIES",
    "Context",
    "ControlMessage",
    "EventConsumer",
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
    "Personalizer",
    "Policy",
    "Profile",
    "ProfileState",
    "ProfileStore",
    "SimilarityNamer",
    "SteerReader",
    "Wishes",
    "device_class",
    "get_policy",
    "parse_control_message",
    "policy_for_viewer",
]
