"""The copy head's mix: what a continuation frame keeps of its anchor and its moved previous frame."""

from __future__ import annotations

import torch

from models.copying import COPY_OUTPUTS, KERNEL, SOURCES, mix, moved

CENTRE = (KERNEL * KERNEL) // 2


def _head(sources: tuple[float, float, float], kernel_cell: int = CENTRE, batch: int = 2) -> torch.Tensor:
    """Copy-head outputs that put (almost) all weight on one mix and one kernel cell, everywhere."""
    head = torch.zeros(batch, COPY_OUTPUTS, 16, 16)
    head[:, :SOURCES] = torch.tensor(sources).view(1, SOURCES, 1, 1)
    head[:, SOURCES + kernel_cell] = 40.0
    return head


def test_a_centred_kernel_keeps_the_previous_frame_and_a_side_one_moves_it_by_a_cell() -> None:
    previous = torch.randn(2, 4, 16, 16)
    centred = torch.zeros(2, KERNEL * KERNEL, 16, 16)
    centred[:, CENTRE] = 1.0
    torch.testing.assert_close(moved(previous, centred), previous)
    from_the_left = torch.zeros(2, KERNEL * KERNEL, 16, 16)
    from_the_left[:, CENTRE - 1] = 1.0  # each cell takes its left neighbour's value: the picture moves right
    shifted = moved(previous, from_the_left)
    torch.testing.assert_close(shifted[..., 1:], previous[..., :-1])
    torch.testing.assert_close(shifted[..., 0], previous[..., 0])  # the edge repeats
    half = (centred + from_the_left) / 2  # half a cell
    torch.testing.assert_close(moved(previous, half)[..., 1:], (previous[..., 1:] + previous[..., :-1]) / 2)


def test_the_mix_picks_its_sources_and_leaves_frames_without_an_anchor_to_the_drawing() -> None:
    drawing, previous, anchor = torch.randn(3, 2, 4, 16, 16)
    anchored = torch.tensor([True, False])
    on_anchor = mix(drawing, _head((0.0, 40.0, 0.0)), previous, anchor, anchored)
    torch.testing.assert_close(on_anchor[0], anchor[0])
    torch.testing.assert_close(on_anchor[1], drawing[1])  # a first frame, or the first after a new prompt
    on_previous = mix(drawing, _head((0.0, 0.0, 40.0)), previous, anchor, anchored)
    torch.testing.assert_close(on_previous[0], previous[0])
    even = mix(drawing, _head((0.0, 0.0, 0.0)), previous, anchor, torch.tensor([True, True]))
    torch.testing.assert_close(even, (drawing + anchor + previous) / 3)
