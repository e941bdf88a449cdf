"""What each segment shows: the personalization policy's scene, the viewer's words, and when to change."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace

from models.world import SceneSpec, describe
from personalization.context import Context
from personalization.personalizer import Personalizer
from personalization.profiles import Profile
from personalization.store import UNAVAILABLE
from personalization.wishes import Wishes

from .steering import prompt_lead

logger = logging.getLogger(__name__)

HOLD_SEGMENTS = 4  # a scene stays this many segments unless the viewer skips or steers


@dataclass(frozen=True)
class SegmentPlan:
    """The decision for one segment: its scene, the prompt that shows it, and the policy that chose it."""

    prompt: str
    scene: dict[str, str] = field(default_factory=dict)
    variant: str | None = None


class SegmentPlanner:
    """Asks the personalizer for a scene and turns it into a prompt, holding scenes for a few segments.

    A skip or a steer makes the next segment draw a new scene at once. After a steer the prompt leads
    with the canonical words of what its wishes asked for (`steering.prompt_lead`), then the steer's raw
    text, so words the world's vocabulary lacks still reach the model, then the scene's caption. While Redis is away the
    scenes come from the last profile this planner loaded, so the stream goes on.
    """

    def __init__(
        self,
        personalizer: Personalizer,
        viewer_id: str,
        context: Context,
        *,
        policy: str | None = None,
        steer_text: str = "",
        hold_segments: int = HOLD_SEGMENTS,
    ) -> None:
        self._personalizer = personalizer
        self._viewer_id = viewer_id
        self._context = context
        self._policy = policy
        self._steer_text = steer_text
        self._hold_segments = hold_segments
        self._current: SegmentPlan | None = None
        self._held = 0
        self._snapshot: Profile | None = None
        self.offline = False  # whether the last scene came from the snapshot because Redis was away
        self._read_here: tuple[str, Wishes] | None = None  # a steer read by the planner while Redis was away

    @property
    def context(self) -> Context:
        """The viewing context the policy sees."""
        return self._context

    def skip(self) -> None:
        """The viewer skipped: the next segment shows a new scene."""
        self._current = None

    def steer(self, text: str) -> None:
        """The viewer said `text` (its wishes are already stored): re-plan with it from the next segment."""
        self._steer_text = text
        self._current = None

    async def plan(self) -> SegmentPlan:
        """The plan of the next segment."""
        if self._current is not None and self._held < self._hold_segments:
            self._held += 1
            return self._current
        try:
            self._snapshot = await self._personalizer.profile(self._viewer_id)
            self.offline = False
        except UNAVAILABLE as error:
            if not self.offline:
                logger.warning("viewer %s: Redis is away (%s); scenes from its last profile", self._viewer_id, error)
            self.offline = True
        profile = self._snapshot
        if self.offline and profile is not None and self._steer_text:
            profile = replace(profile, wishes=await self._unstored_wishes(profile.wishes))
        scene = self._personalizer.choose(profile, context=self._context, policy=self._policy)
        caption = describe(SceneSpec(**scene))
        steer = self._steer_text
        prompt = f"{steer}, {caption}" if steer else caption
        lead = prompt_lead(profile.wishes, scene, steer) if steer and profile is not None else ""
        if lead:
            prompt = f"{lead}: {prompt}"
        self._current = SegmentPlan(prompt=prompt, scene=scene, variant=self._personalizer.policy(self._policy).name)
        self._held = 1
        return self._current

    async def _unstored_wishes(self, stored: Wishes) -> Wishes:
        """The wishes with the latest steer read in: with Redis away it may not have been stored, and the
        stream follows it all the same (read once per steer, on a worker thread)."""
        reader = self._personalizer.steer_reader
        if reader is None:
            return stored
        if self._read_here is None or self._read_here[0] != self._steer_text:
            wishes = await asyncio.to_thread(reader.update, stored, self._steer_text)
            self._read_here = (self._steer_text, wishes)
        return self._read_here[1]
