"""What the server needs of a streaming engine: the one interface `streamer/` depends on.

`models.engine.StreamingEngine` is the implementation; tests and tools may pass anything with these
members. `models.runner.TwoStageRunner` runs one on two threads; `models.tuning` measures its speed
and, for the concrete engine, chooses its precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

Frame = npt.NDArray[np.uint8]
"""One HxWx3 uint8 RGB frame."""


class FrameEngine(Protocol):
    """Makes the next frame of many streams in one batch: latents first, then pixels."""

    width: int
    """Frame width in pixels."""
    height: int
    """Frame height in pixels."""
    device: torch.device
    """Where the model runs."""

    @property
    def steps(self) -> int:
        """Denoising steps per frame of streams without steps of their own (1-4)."""

    @steps.setter
    def steps(self, value: int) -> None: ...

    def new_stream(self, seed: int) -> Any:
        """A new stream's state; its frames depend only on it, its conditioning and its previous frame."""

    def grounded_prompt(self, text: str) -> str:
        """`text` with the canonical words of the scene it names put in front (cached per text)."""

    def encode_prompt(self, text: str) -> torch.Tensor:
        """The conditioning of a prompt (grounded as `grounded_prompt` does)."""

    def advance(self, requests: Sequence[tuple[Any, torch.Tensor]]) -> torch.Tensor:
        """Each stream's next latent in one batch; the streams' states move on."""

    def decode(self, latents: torch.Tensor) -> list[Frame]:
        """Latents to HxWx3 uint8 frames."""

    def blank_conditioning(self) -> torch.Tensor:
        """An all-zero conditioning of the shape `encode_prompt` gives, for throwaway frames."""
