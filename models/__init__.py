"""Pixelcast models: the streaming text-to-video diffusion engine, its pipeline and text encoder.

Heavy imports (torch, diffusers, transformers) happen on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.engine import StreamingEngine, StreamState, default_model_path, slerp_conditioning
    from models.grounding import SceneGrounder
    from models.text import TextEncoder

__all__ = ["SceneGrounder", "StreamingEngine", "StreamState", "TextEncoder", "default_model_path", "slerp_conditioning"]

_HOMES = {
    "StreamingEngine": "models.engine",
    "StreamState": "models.engine",
    "default_model_path": "models.engine",
    "slerp_conditioning": "models.engine",
    "TextEncoder": "models.text",
    "SceneGrounder": "models.grounding",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
