"""``Personalizer``: the three calls a streaming session makes about its viewer.

    scene = await personalizer.next_scene(viewer_id, context=ctx)          # before each segment
    await personalizer.record_feedback(viewer_id, feedback, scene, context=ctx)  # applied at once
    wishes = await personalizer.steer(viewer_id, text)                      # steer text -> wishes

Scenes are plain ``dict[str, str]`` (attr -> value); the streamer converts to and from ``SceneSpec``.

With Redis away, feedback and steers go to the event spool (``personalization.spool``) when one is
attached, and a session keeps choosing scenes from the last ``Profile`` it loaded (``choose``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

import numpy as np
import redis.asyncio as aioredis

from personalization.context import Context
from personalization.events import EventLog, new_event_id
from personalization.messages import Feedback
from personalization.policies import DEFAULT_POLICY, POLICIES, Policy, get_policy
from personalization.profiles import Profile, ProfileState, ProfileStore
from personalization.spool import EventSpool, SpooledEvent
from personalization.store import UNAVAILABLE
from personalization.viewers import ViewerRegistry
from personalization.wishes import SteerReader, Wishes

SPOOLED_PREFIX = "spooled:"


def is_spooled(event_id: str) -> bool:
    """Whether ``record_feedback`` spooled the event (Redis was away) rather than stored it."""
    return event_id.startswith(SPOOLED_PREFIX)


class Personalizer:
    """Profiles, wishes and policies of all viewers, over one Redis client."""

    def __init__(
        self,
        redis: aioredis.Redis,
        vocabulary: Mapping[str, Sequence[str]],
        *,
        steer_reader: SteerReader | None = None,
        default_policy: str = DEFAULT_POLICY,
        seed: int | None = None,
        wait_replicas: int = 0,
    ) -> None:
        if default_policy not in POLICIES:
            raise ValueError(f"unknown policy {default_policy!r}; expected one of {', '.join(POLICIES)}")
        self.vocabulary = {attr: tuple(values) for attr, values in vocabulary.items()}
        self.profiles = ProfileStore(redis)
        self.events = EventLog(redis, self.profiles, wait_replicas=wait_replicas)
        self.viewers = ViewerRegistry(redis)
        self.steer_reader = steer_reader
        self.default_policy = default_policy
        self.rng = np.random.default_rng(seed)
        self.spool: EventSpool | None = None  # where feedback and steers go while Redis is away (attach_spool)
        self._policies: dict[str, Policy] = {}

    def policy(self, name: str | None = None) -> Policy:
        """The policy called ``name`` (an experiment's assignment), else the default one."""
        name = name if name in POLICIES else self.default_policy
        if name not in self._policies:
            self._policies[name] = get_policy(name, self.vocabulary)
        return self._policies[name]

    async def profile(self, viewer_id: str) -> Profile:
        """The viewer's posteriors and wishes. Raises ``UnknownViewer``."""
        return await self.profiles.load(viewer_id)

    async def next_scene(
        self, viewer_id: str, *, context: Context | None = None, policy: str | None = None
    ) -> dict[str, str]:
        """The scene of the viewer's next segment (one Redis round trip). Raises ``UnknownViewer``."""
        return self.choose(await self.profiles.load(viewer_id), context=context, policy=policy)

    def choose(
        self, profile: Profile | None, *, context: Context | None = None, policy: str | None = None
    ) -> dict[str, str]:
        """The scene a policy draws from an already loaded profile (None: a viewer nothing is known about)."""
        if profile is None:
            profile = Profile(ProfileState(prior=self.profiles.prior), Wishes())
        return self.policy(policy).choose(profile.state, profile.wishes, context, self.rng)

    async def record_feedback(
        self,
        viewer_id: str,
        feedback: Feedback,
        scene: Mapping[str, str] | None,
        *,
        context: Context | None = None,
        experiment: str | None = None,
    ) -> str:
        """Append feedback about a segment's scene and apply it at once (one round trip); return the event id.

        With Redis away and a spool attached, the event is spooled (fsynced) instead and the id returned
        is ``spooled:<eid>`` (see ``is_spooled``); it reaches the profile once Redis is back. Raises
        ``spool.SpoolFull`` when the spool is full, the Redis error when there is no spool. `experiment`: the
        experiment the viewer's session runs; a spooled event is counted in it when it is replayed.
        """
        eid = new_event_id()
        try:
            return (await self.events.append_many(viewer_id, [(feedback, scene, context)], apply=True, eids=[eid]))[0]
        except UNAVAILABLE:
            if self.spool is None:
                raise
        await self.spool.add(SpooledEvent.of(viewer_id, feedback, scene, context, eid, experiment))
        return SPOOLED_PREFIX + eid

    async def steer(self, viewer_id: str, text: str, *, experiment: str | None = None) -> Wishes | None:
        """Remember a steer text and update the viewer's wishes from it; return the wishes now in force.

        Without a ``steer_reader`` the text is only remembered (it still goes into the prompt). With Redis
        away and a spool attached the steer is spooled instead, and stored in turn once Redis is back
        (None is returned); so is any steer while the spool still holds events, so that steers are stored
        in the order they were sent. `experiment`: the experiment the viewer's session runs, in which a
        spooled steer is counted when it is replayed. Raises ``spool.SpoolFull`` when the spool is full, the
        Redis error when there is no spool.
        """
        sent_ms = int(time.time() * 1000)  # the same in Redis and in the spool: a replay knows it if it landed
        spool = self.spool
        if spool is None:
            return await self._store_steer(viewer_id, text, sent_ms)
        if not spool.pending:
            try:
                return await self._store_steer(viewer_id, text, sent_ms)
            except UNAVAILABLE:
                pass  # spooled below
        await spool.add(SpooledEvent.steer(viewer_id, text, new_event_id(), sent_ms, experiment))
        return None

    async def store_steer(self, viewer_id: str, text: str, sent_ms: int) -> bool:
        """Store a replayed steer sent at `sent_ms` (unix ms) if it is newer than the viewer's latest stored
        steer; False where it is not (it landed before its reply was lost, or a newer one superseded it)."""
        if sent_ms <= await self.viewers.last_steer_ms(viewer_id):
            return False
        await self._store_steer(viewer_id, text, sent_ms)
        return True

    async def _store_steer(self, viewer_id: str, text: str, sent_ms: int) -> Wishes:
        """The wishes in force after storing one steer sent at `sent_ms`.

        The wishes are updated before the text is remembered: a steer cut off between the two writes is
        replayed whole, and merging the same words again changes nothing.
        """
        wishes = await self.profiles.wishes(viewer_id)
        if self.steer_reader is not None:
            # Parsing embeds text (a model call): keep it off the event loop.
            updated = await asyncio.to_thread(self.steer_reader.update, wishes, text)
            if updated != wishes:
                await self.profiles.set_wishes(viewer_id, updated)
            wishes = updated
        await self.viewers.record_steer(viewer_id, text, sent_ms)
        return wishes

    def attach_spool(self, spool: EventSpool) -> None:
        """Keep feedback and steers in `spool` while Redis is away; its replays store steers here."""
        self.spool = spool
        spool.steers = self.store_steer

    async def clear_wishes(self, viewer_id: str) -> None:
        """Forget the viewer's wishes. Raises ``UnknownViewer``."""
        await self.profiles.set_wishes(viewer_id, Wishes())
