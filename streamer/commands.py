"""What a viewer's steer or feedback does, whether it came over the data channel or HTTP."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from personalization.messages import ControlMessage, Feedback, Steer
from personalization.personalizer import Personalizer
from personalization.spool import SpoolFull
from personalization.store import UNAVAILABLE
from personalization.wishes import is_reset

if TYPE_CHECKING:
    from .session import ViewerSession

logger = logging.getLogger(__name__)

STEER_NOT_KEPT: tuple[type[Exception], ...] = (*UNAVAILABLE, SpoolFull)
"""Why a steer can go unstored while the streams still follow it: Redis away without a spool, or spool full."""


async def carry_out(
    message: ControlMessage, viewer_id: str, personalizer: Personalizer, live: Sequence[ViewerSession]
) -> str | None:
    """Store a viewer's steer or feedback and apply it to their `live` sessions; the feedback's event id.

    A steer updates the viewer's wishes and every live stream's prompt; with Redis away it waits in the
    spool to be stored, and the streams follow it at once all the same (where it cannot be kept, without
    a spool or with the spool full, only the streams do; with no live stream the error reaches the
    caller). Feedback is credited to the scene its segment showed in the first live session (a skip
    changes that stream's scene at once), or stored for the viewer alone without one.
    """
    if isinstance(message, Steer):
        spooled = False
        experiment = live[0].experiment if live else None
        try:
            spooled = await personalizer.steer(viewer_id, message.text, experiment=experiment) is None
        except STEER_NOT_KEPT as error:
            if not live:
                raise
            logger.warning("viewer %s: steer not stored (%s); the stream follows it", viewer_id, error)
        for session in live:
            session.steer("" if is_reset(message.text) else message.text)
        if live and not spooled:  # a spooled steer is counted in the experiment when it is replayed
            await live[0].record_steer()
        return None
    assert isinstance(message, Feedback)
    if live:
        return await live[0].record_feedback(message)
    return await personalizer.record_feedback(viewer_id, message, None)
