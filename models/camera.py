"""Camera motion: which way a prompt's camera moves, read from the conditioning the denoiser sees, and the
stream's anchor moved by it.

A one-step denoiser redraws every frame as the average of what its text and context allow, so a stream
that goes on from its own previous frame loses a little of its picture each frame (docs/fidelity.md).
A continuation is drawn instead from its anchor (the picture the stream started from under its prompt)
moved by the camera since then: both of the denoiser's context slots get that moved anchor, so the
picture pans or zooms as the words ask and never compounds its losses. The camera reader is a small
head over the conditioning's token states (a per-token linear score, max-pooled over the prompt's
tokens), trained on the world's captions; each camera and pace value's motion is a figure fitted on the
world's clips (`pixelcast train`). Where the reader is not sure the prompt names a camera, the anchor
stays where it is; where it is, the camera moves the anchor as far as `max_travel` and rests there.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


class Motion(NamedTuple):
    """How far a stream's anchor moves per frame, one entry per stream `[B]`."""

    pan: torch.Tensor
    """Frame widths per frame; positive turns the view right (the picture slides left)."""
    zoom: torch.Tensor
    """Growth of the picture's scale per frame (0.01: one percent larger each frame)."""


def move(latents: torch.Tensor, pan: torch.Tensor, zoom: torch.Tensor) -> torch.Tensor:
    """`latents` `[B, C, h, w]` seen by a camera turned by `pan` frame widths and zoomed in `1 + zoom` times
    (both `[B]`); cells the view brings in from past the edge repeat the edge."""
    batch, _, height, width = latents.shape
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=latents.device, dtype=latents.dtype)
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=latents.device, dtype=latents.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    scale = (1.0 + zoom.to(latents)).view(batch, 1, 1)
    # grid_sample's coordinates run from -1 to 1 across the frame: a frame width is 2 of them
    sample_x = (grid_x + 2.0 * pan.to(latents).view(batch, 1, 1)) / scale
    sample_y = grid_y.expand(batch, -1, -1) / scale
    grid = torch.stack([sample_x, sample_y], dim=-1)
    return F.grid_sample(latents, grid, mode="bilinear", padding_mode="border", align_corners=False)


class CameraReader(ModelMixin, ConfigMixin):
    """Conditioning token states `[B, tokens, dim]` -> each stream's camera `Motion` per frame.

    Args:
        cameras: the world's camera values, in order (the first is the still camera).
        paces: the world's pace values, in order.
        pan_per_second: per camera, per pace, frame widths the view turns per second.
        zoom_per_second: per camera, per pace, growth of the picture's scale per second.
        frames_per_second: the frame rate the motion is spread over (the world's).
        embedding_dim: the token states' size (384 for MiniLM).
        threshold: a camera or pace is taken as named where its probability is at least this.
        max_travel: how far the camera moves an anchor (frame widths, or scale growth) before it comes to
            rest: the denoiser cannot draw the scenery a long pan would uncover, and frames drawn again from
            their own moved frames dissolve into streaks (docs/fidelity.md).

    Each of camera and pace has an "unnamed" outcome besides its values (the last logit), which text that
    does not say how the camera moves (most prompts) falls on.
    """

    @register_to_config
    def __init__(
        self,
        cameras: list[str],
        paces: list[str],
        pan_per_second: list[list[float]],
        zoom_per_second: list[list[float]],
        frames_per_second: int = 24,
        embedding_dim: int = 384,
        threshold: float = 0.5,
        max_travel: float = 0.25,
    ) -> None:
        super().__init__()
        if not len(cameras) == len(pan_per_second) == len(zoom_per_second):
            raise ValueError("pan_per_second and zoom_per_second need one row per camera")
        if any(len(row) != len(paces) for row in (*pan_per_second, *zoom_per_second)):
            raise ValueError("pan_per_second and zoom_per_second need one entry per pace")
        self.tokens = nn.Linear(embedding_dim, len(cameras) + 1 + len(paces) + 1)
        per_frame = 1.0 / frames_per_second
        self.register_buffer("pan", torch.tensor(pan_per_second) * per_frame, persistent=False)
        self.register_buffer("zoom", torch.tensor(zoom_per_second) * per_frame, persistent=False)

    def forward(self, conditioning: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Camera logits `[B, cameras + 1]` and pace logits `[B, paces + 1]` (the last: unnamed) of token
        states `[B, tokens, dim]`; all-zero tokens (padding) are left out of the pooling."""
        scores = self.tokens(conditioning.to(self.tokens.weight.dtype))
        padding = conditioning.abs().sum(-1, keepdim=True) == 0
        pooled = scores.masked_fill(padding, torch.finfo(scores.dtype).min).amax(dim=1)
        cameras = len(self.config.cameras) + 1
        return pooled[:, :cameras], pooled[:, cameras:]

    @torch.no_grad()
    def motion(self, conditioning: torch.Tensor) -> Motion:
        """Per stream, how far its anchor moves per frame: its camera value's motion at the pace it names, or
        the mean over paces where it names none; none where it names no camera."""
        camera_logits, pace_logits = self(conditioning)
        camera_p, camera = camera_logits.float().softmax(-1).max(-1)
        pace_p, pace = pace_logits.float().softmax(-1).max(-1)
        named_camera = (camera_p >= self.config.threshold) & (camera < len(self.config.cameras))
        named_pace = (pace_p >= self.config.threshold) & (pace < len(self.config.paces))
        camera = camera.clamp(max=len(self.config.cameras) - 1)
        pace = pace.clamp(max=len(self.config.paces) - 1)
        out = []
        for table in (self.pan, self.zoom):
            rows = table[camera]  # [B, paces]
            value = torch.where(named_pace, rows.gather(1, pace[:, None])[:, 0], rows.mean(1))
            out.append(torch.where(named_camera, value, torch.zeros_like(value)))
        return Motion(*out)

    def travel(self, motion: Motion, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """How far (pan, zoom) anchors have moved after `frames` `[B]` frames of `motion`: in a straight line
        until the larger of the two reaches `max_travel`, where the camera comes to rest."""
        pan, zoom = motion.pan * frames, motion.zoom * frames
        largest = torch.maximum(pan.abs(), zoom.abs())
        rest = (self.config.max_travel / largest.clamp(min=1e-12)).clamp(max=1.0)
        return pan * rest, zoom * rest
