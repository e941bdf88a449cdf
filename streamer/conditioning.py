"""Smooth changes of a stream's text conditioning, so a steer blends in instead of cutting."""

from __future__ import annotations

from typing import Any

from models.engine import slerp_conditioning


class ConditioningBlend:
    """Yields one conditioning tensor per frame, slerping to a new target over a few frames."""

    def __init__(self, initial: Any, transition_frames: int) -> None:
        if transition_frames < 1:
            raise ValueError(f"transition_frames must be at least 1, got {transition_frames}")
        self._transition_frames = transition_frames
        self._source = initial
        self._target = initial
        self._step = transition_frames

    @property
    def blending(self) -> bool:
        """Whether a transition is still under way."""
        return self._step < self._transition_frames

    def retarget(self, target: Any, current: Any | None, transition_frames: int | None = None) -> None:
        """Start blending from `current` (what the last frame used; None before any frame) to `target`.

        `transition_frames` changes the length of this and later blends (a stream at a lower frame
        rate blends over fewer frames, so a steer takes the same time to show).
        """
        if transition_frames is not None:
            self._transition_frames = max(1, int(transition_frames))
        self._source = current if current is not None else self._target
        self._target = target
        self._step = 0

    def next(self) -> Any:
        """The conditioning for the next frame."""
        if self._step >= self._transition_frames:
            return self._target
        self._step += 1
        return slerp_conditioning(self._source, self._target, self._step / self._transition_frames)
