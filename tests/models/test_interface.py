"""The streaming engine offers everything the server's engine interface names."""

from __future__ import annotations

import inspect

from models.engine import StreamingEngine
from models.interface import FrameEngine


def test_the_streaming_engine_has_every_member_of_the_interface_with_the_same_parameters() -> None:
    members = [name for name in vars(FrameEngine) if not name.startswith("_")] + list(FrameEngine.__annotations__)
    assert {"advance", "decode", "new_stream", "encode_prompt", "width"} <= set(members)
    for name in members:
        if name in FrameEngine.__annotations__:
            continue  # instance attributes, set in __init__
        wanted, offered = getattr(FrameEngine, name), getattr(StreamingEngine, name)
        if callable(wanted):
            assert list(inspect.signature(wanted).parameters) == list(inspect.signature(offered).parameters), name
        else:
            assert isinstance(offered, property), name
