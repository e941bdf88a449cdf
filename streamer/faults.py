"""Fault injection for tests: make one viewer's plan, engine request or encoder raise, on purpose.

Off unless the server starts with `$PIXELCAST_FAULT_MARKER` set (read once, at start-up). With it set to
`M`, a stream whose prompt (the viewer's steer text leads it) contains `M:plan`, `M:engine` or `M:encoder`
fails at that stage, so tests can show that one viewer's failure ends only that viewer's stream. Never set
it in production: anyone who can steer could then end their own stream (and nothing else).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

FAULT_MARKER_ENV = "PIXELCAST_FAULT_MARKER"
STAGES = ("plan", "engine", "encoder")


class InjectedFault(RuntimeError):
    """The failure a test asked for."""


@dataclass(frozen=True)
class FaultInjector:
    """Decides whether a stream's stage fails; inert with an empty marker."""

    marker: str = ""

    @classmethod
    def from_environment(cls) -> FaultInjector:
        """The injector `$PIXELCAST_FAULT_MARKER` asks for (inert when unset)."""
        return cls(os.environ.get(FAULT_MARKER_ENV, "").strip())

    def fires(self, stage: str, prompt: str) -> bool:
        """Whether `stage` of the stream now showing `prompt` must fail."""
        return bool(self.marker) and f"{self.marker}:{stage}" in prompt

    def check(self, stage: str, prompt: str) -> None:
        """Raise `InjectedFault` where `fires` says so."""
        if self.fires(stage, prompt):
            raise InjectedFault(f"injected {stage} fault (${FAULT_MARKER_ENV} is set)")
