"""Batched autoregressive rollouts from the `StreamingEngine`, keeping only the frames asked for."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from models.engine import StreamingEngine

Conditioning = Callable[[int], torch.Tensor]
"""Frame index -> conditioning `[tokens, dim]` of one stream (lets a prompt change mid-stream)."""


def rollout(
    engine: StreamingEngine,
    conditionings: Sequence[torch.Tensor | Conditioning],
    seeds: Sequence[int],
    num_frames: int,
    keep: Sequence[int] | None = None,
    *,
    batch: int = 32,
    desc: str = "rollout",
    progress: bool = True,
    starts: Sequence[torch.Tensor] | None = None,
) -> np.ndarray:
    """Stream `num_frames` frames for each conditioning from no context (or `starts`); return the kept frames.

    Streams run in groups of `batch`, one engine call per frame for the whole group; frames that are
    not kept are not decoded.

    Args:
        conditionings: one per stream, a fixed tensor or a function of the frame index.
        seeds: noise seed per stream.
        keep: frame indices to return (default all).
        starts: per stream, a latent `[4, h, w]` taken as the frame before its first (default none: the
            stream starts from nothing, as a viewer's does).

    Returns:
        uint8 `[streams, len(keep), H, W, 3]`.
    """
    if len(conditionings) != len(seeds):
        raise ValueError("one seed per conditioning")
    if starts is not None and len(starts) != len(seeds):
        raise ValueError("one start latent per stream")
    kept = list(range(num_frames)) if keep is None else sorted(set(int(k) for k in keep))
    slot = {k: i for i, k in enumerate(kept)}
    out = np.empty((len(seeds), len(kept), engine.height, engine.width, 3), np.uint8)
    total = len(seeds) * num_frames
    with tqdm(total=total, desc=desc, unit="frame", disable=not progress, leave=False) as bar:
        for start in range(0, len(seeds), batch):
            group = range(start, min(start + batch, len(seeds)))
            states = [engine.new_stream(int(seeds[i])) for i in group]
            if starts is not None:
                for state, i in zip(states, group):
                    state.latent = starts[i]
            for t in range(num_frames):
                conds = [_at(conditionings[i], t) for i in group]
                requests = list(zip(states, conds))
                if t in slot:
                    for j, frame in zip(group, engine.generate(requests)):
                        out[j, slot[t]] = frame
                else:  # a frame nobody looks at needs no decoding
                    engine.advance(requests)
                bar.update(len(states))
    return out


def _at(cond: torch.Tensor | Conditioning, t: int) -> torch.Tensor:
    return cond(t) if callable(cond) else cond
