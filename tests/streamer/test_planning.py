"""The segment planner: a steer leads the prompt with what it asked for, with Redis there or away."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from models.world import ATTRIBUTES
from personalization.context import Context
from personalization.personalizer import Personalizer
from personalization.redis_server import EmbeddedRedis
from personalization.store import connect
from personalization.wishes import SteerReader
from streamer.planning import SegmentPlanner


def _words_name_values(parts: list[str]) -> list[Mapping[str, Collection[str]]]:
    """A namer that knows each value by its own name (enough for these steers)."""
    return [
        {attr: {value} for attr, values in ATTRIBUTES.items() for value in values if value in part.split()}
        for part in parts
    ]


async def test_a_steer_leads_the_prompt_and_the_stream_follows_it_with_redis_away(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    client = connect(await server.start())
    try:
        personalizer = Personalizer(client, ATTRIBUTES, steer_reader=SteerReader(_words_name_values), seed=0)
        viewer = await personalizer.viewers.create()
        planner = SegmentPlanner(personalizer, viewer, Context("night", "desktop"))

        await personalizer.steer(viewer, "desert please")
        planner.steer("desert please")
        stored = await planner.plan()
        assert stored.scene["subject"] == "desert"
        assert stored.prompt.startswith("desert please, "), "the steer says the canonical word: no lead"

        await server.stop()  # Redis is away: the next steer cannot be stored
        planner.steer("city at dusk")
        offline = await planner.plan()
        assert planner.offline
        assert offline.scene["subject"] == "city" and offline.scene["palette"] == "dusk"
        assert offline.prompt.startswith("city skyline: city at dusk, "), offline.prompt
    finally:
        await client.aclose()
        await server.stop()
