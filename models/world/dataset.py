"""Training samples drawn from the world: consecutive frame pairs with captions, and single frames."""

from __future__ import annotations

import numpy as np

from models.world.captions import caption
from models.world.render import render_frame
from models.world.spec import SceneSpec

MAX_T = 24 * 60 * 10
"""Clip times are drawn from the first ten minutes."""

SEED_POOL = 1 << 20
"""Scene seeds are drawn from range(SEED_POOL)."""


def _clips(rng: np.random.Generator, count: int) -> list[tuple[SceneSpec, int]]:
    return [(SceneSpec.random(rng), int(rng.integers(SEED_POOL))) for _ in range(count)]


def sample_pairs(
    rng: np.random.Generator,
    batch: int,
    size: int = 128,
    split: str = "train",
    full_caption_rate: float = 0.5,
    frames_per_clip: int = 2,
) -> tuple[np.ndarray, np.ndarray, list[str], list[SceneSpec]]:
    """`batch` pairs of consecutive frames (t-1, t) of random clips, with a caption of each clip.

    Returns prev_frames and frames (uint8 [B, size, size, 3]), captions and specs. A share
    `full_caption_rate` of captions names every attribute; the rest use any template (which always
    names subject and palette). Each clip gives `frames_per_clip` pairs at different times (cheaper:
    a clip's static layers are built once). Deterministic given the state of `rng`.
    """
    clips = _clips(rng, -(-batch // frames_per_clip))
    prev = np.empty((batch, size, size, 3), np.uint8)
    cur = np.empty_like(prev)
    captions: list[str] = []
    specs: list[SceneSpec] = []
    for i in range(batch):
        spec, seed = clips[i // frames_per_clip]
        t = int(rng.integers(1, MAX_T))
        prev[i] = render_frame(spec, seed, t - 1, size)
        cur[i] = render_frame(spec, seed, t, size)
        full = rng.random() < full_caption_rate
        captions.append(caption(spec, rng, split, mention=("weather", "pace", "camera") if full else ()))
        specs.append(spec)
    return prev, cur, captions, specs


def sample_frames(rng: np.random.Generator, batch: int, size: int = 128, frames_per_clip: int = 2) -> np.ndarray:
    """`batch` single frames (uint8 [B, size, size, 3]) of random clips at random times, for the autoencoder."""
    clips = _clips(rng, -(-batch // frames_per_clip))
    out = np.empty((batch, size, size, 3), np.uint8)
    for i in range(batch):
        spec, seed = clips[i // frames_per_clip]
        out[i] = render_frame(spec, seed, int(rng.integers(0, MAX_T)), size)
    return out
