"""The copy head: a continuation frame may keep what it already has instead of redrawing it.

A one-step UNet redraws every frame as the average of what its text and context allow, so a stream loses
a little of its picture each frame and compounds the loss (docs/fidelity.md). With a copy head the UNet
puts out, beside its own drawing, three mixing weights and a 3x3 motion kernel per latent cell; the
frame's clean latent is, cell by cell, a mix of the UNet's drawing, the stream's anchor (the picture it
started from under its prompt) and the previous frame moved by the kernel (a fraction of a cell's shift,
which is how far a camera moves a frame at 24 fps). Where a frame has no anchor (a stream's first, the
first after a new prompt) the UNet's drawing is used alone, so steering and first frames are the UNet's.

The UNet's `out_channels` carry it all: `latent_channels` of drawing, then `COPY_OUTPUTS` more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SOURCES = 3
"""What a cell mixes: the UNet's drawing, the anchor, the moved previous frame."""

KERNEL = 3
"""Side of the motion kernel, in latent cells."""

COPY_OUTPUTS = SOURCES + KERNEL * KERNEL
"""Output channels a copy head adds to the UNet's drawing."""


def has_copy_head(out_channels: int, latent_channels: int) -> bool:
    """Whether a UNet with `out_channels` carries a copy head for latents of `latent_channels`."""
    return out_channels == latent_channels + COPY_OUTPUTS


def moved(previous: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """`previous` `[B, C, h, w]` moved by a per-cell `kernel` of `KERNEL**2` weights `[B, KERNEL**2, h, w]`
    (summing to 1); cells past the edge repeat the edge, as new scenery entering the frame most resembles it."""
    batch, channels, height, width = previous.shape
    pad = KERNEL // 2
    padded = F.pad(previous, (pad, pad, pad, pad), mode="replicate")
    around = F.unfold(padded, KERNEL).view(batch, channels, KERNEL * KERNEL, height, width)
    return (around * kernel.unsqueeze(1)).sum(2)


def mix(
    drawing: torch.Tensor,
    head: torch.Tensor,
    previous: torch.Tensor,
    anchor: torch.Tensor,
    anchored: torch.Tensor,
) -> torch.Tensor:
    """The clean latent of each frame: the copy head's mix where `anchored` (`[B]` bool), else `drawing`.

    Args:
        drawing: the UNet's own clean latent `[B, C, h, w]`.
        head: the UNet's copy-head outputs `[B, COPY_OUTPUTS, h, w]` (mixing logits, then kernel logits).
        previous: the previous frame's clean latent (without context noise) `[B, C, h, w]`.
        anchor: the stream's anchor `[B, C, h, w]` (anything where not `anchored`).
        anchored: which rows go on under an anchor.
    """
    weights = head[:, :SOURCES].float().softmax(1).to(drawing.dtype)
    kernel = head[:, SOURCES:].float().softmax(1).to(drawing.dtype)
    mixed = weights[:, :1] * drawing + weights[:, 1:2] * anchor + weights[:, 2:3] * moved(previous, kernel)
    return torch.where(anchored.view(-1, 1, 1, 1), mixed, drawing)
