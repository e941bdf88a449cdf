"""Static drawing helpers for the world: a periodic canvas, soft masks, periodic noise, textures.

Coordinates: `X` runs over the canvas width in units of 1/128 of the frame width (so layouts do not
depend on the render size), `Y` is the fraction of the frame height (0 = top). The canvas repeats
horizontally every `PERIOD` units, so a panning camera can run forever.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

PERIOD = 256.0
"""Horizontal repeat of every scene, in 1/128-frame-width units (two frame widths)."""


class Canvas:
    """An RGB canvas with per-pixel depth (for fog) and terrain coverage (1 - sky)."""

    def __init__(self, height: int, width: int) -> None:
        self.rgb = np.zeros((height, width, 3), np.float32)
        self.depth = np.ones((height, width), np.float32)
        self.cover = np.zeros((height, width), np.float32)
        self.scale = height / 128.0
        self.X = ((np.arange(width, dtype=np.float32) + 0.5) / self.scale)[None, :]
        self.Y = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None]

    @property
    def height(self) -> int:
        """Canvas height in pixels."""
        return self.rgb.shape[0]

    def paint(self, mask: np.ndarray, color: np.ndarray, depth: float | np.ndarray, terrain: bool = True) -> None:
        """Paint `color` ((3,) or (H, W, 3)) where `mask` (0..1, broadcastable to (H, W)) is set."""
        mask = np.broadcast_to(np.asarray(mask, np.float32), self.cover.shape)
        diff = np.asarray(color, np.float32) - self.rgb
        diff *= mask[..., None]
        self.rgb += diff
        step = np.asarray(depth, np.float32) - self.depth
        step *= mask
        self.depth += step
        if terrain:
            np.maximum(self.cover, mask, out=self.cover)

    def below(self, profile: np.ndarray) -> np.ndarray:
        """Soft mask of pixels below `profile` (a Y value per column, or a scalar)."""
        return np.clip((self.Y - profile) * self.height + 0.5, 0.0, 1.0)

    def within(self, dx: np.ndarray, half_width: np.ndarray | float) -> np.ndarray:
        """Soft mask of |dx| < half_width (both in X units)."""
        return np.clip((half_width - np.abs(dx)) * self.scale + 0.5, 0.0, 1.0)


def wrap(dx: np.ndarray, period: float = PERIOD) -> np.ndarray:
    """Signed periodic distance in (-period/2, period/2]."""
    return (dx + period / 2) % period - period / 2


def periodic_noise(rng: np.random.Generator, X: np.ndarray, freqs: range, amp: float = 1.0) -> np.ndarray:
    """Smooth noise along X, periodic over `PERIOD`, roughly in [-amp, amp]."""
    out = np.zeros_like(X)
    total = 0.0
    for f in freqs:
        a = 1.0 / f
        out = out + a * np.sin(2 * np.pi * f * X / PERIOD + rng.uniform(0, 2 * np.pi))
        total += a
    return (out * (amp / total)).astype(np.float32)


def smoothstep(x: np.ndarray) -> np.ndarray:
    """Cubic ease of x clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@lru_cache(maxsize=64)
def cloud_alpha(size: int, seed: int, amount: int) -> np.ndarray:
    """Cloud coverage (H, 2*size) in [0, 1], periodic in x; `amount` 0 (few) .. 2 (overcast)."""
    rng = np.random.default_rng([seed, 101, amount])
    height, width = size, 2 * size
    scale = size / 128.0
    X = (np.arange(width, dtype=np.float32) + 0.5) / scale
    Y = (np.arange(height, dtype=np.float32) + 0.5) / scale
    acc = np.zeros((height, width), np.float32)
    clusters = (4, 7, 11)[amount]
    for _ in range(clusters):
        cx, cy = rng.uniform(0, PERIOD), rng.uniform(8, 44)
        width_u = rng.uniform(18, 40)
        for _ in range(5):
            bx = cx + rng.uniform(-width_u / 2, width_u / 2)
            by = cy + rng.uniform(-4, 3)
            rx, ry = rng.uniform(6, 14), rng.uniform(4, 8)
            x0, x1 = int((bx - rx) * scale) - 1, int((bx + rx) * scale) + 2
            y0, y1 = max(int((by - ry) * scale) - 1, 0), min(int((by + ry) * scale) + 2, height)
            cols = np.arange(x0, x1) % width
            dx = wrap(X[cols] - bx)[None, :] / rx
            dy = (Y[y0:y1, None] - by) / ry
            blob = np.clip(1.0 - dx * dx - dy * dy, 0.0, 1.0)
            acc[y0:y1, cols] += blob
    alpha = np.clip(acc * 2.2, 0.0, 1.0)
    if amount == 2:
        alpha = np.maximum(alpha, 0.35 * np.clip(1.2 - Y / 70.0, 0, 1)[:, None])
    return (0.9 * alpha).astype(np.float32)


@lru_cache(maxsize=16)
def streak_texture(size: int, seed: int, kind: str) -> np.ndarray:
    """A (H, W) texture tiling in both axes: 'rain' slanted streaks, 'snow' flakes, 'flow' vertical streaks,
    'smoke' soft puffs, 'fog' horizontal bands."""
    rng = np.random.default_rng([seed, 202, len(kind), ord(kind[0])])
    n = size
    tex = np.zeros((n, n), np.float32)
    scale = n / 128.0
    if kind == "rain":
        count, length = int(110 * scale * scale), max(3, int(7 * scale))
        ys, xs = rng.integers(0, n, count), rng.integers(0, n, count)
        bright = rng.uniform(0.35, 0.8, count).astype(np.float32)
        for k in range(length):
            np.maximum.at(tex, ((ys + k) % n, (xs + k // 3) % n), bright * (0.5 + 0.5 * k / length))
    elif kind == "snow":
        count = int(90 * scale * scale)
        ys, xs = rng.integers(0, n, count), rng.integers(0, n, count)
        bright = rng.uniform(0.6, 1.0, count).astype(np.float32)
        np.maximum.at(tex, (ys, xs), bright)
        big = rng.random(count) < 0.4
        for dy, dx in ((0, 1), (1, 0), (1, 1)):
            np.maximum.at(tex, ((ys[big] + dy) % n, (xs[big] + dx) % n), bright[big] * 0.8)
    elif kind == "flow":
        grid = np.arange(n, dtype=np.float32)
        column = np.convolve(np.tile(rng.normal(0, 1, n), 3), np.ones(3) / 3, mode="same")[n : 2 * n]
        phase = np.convolve(np.tile(rng.uniform(0, 2 * np.pi, n), 3), np.ones(2) / 2, mode="same")[n : 2 * n]
        waves = np.zeros((n, n), np.float32)
        for f in (2, 3, 5):
            waves += np.sin(2 * np.pi * f * grid[:, None] / n + phase[None, :] * f)
        tex = np.clip(0.5 + 0.22 * column[None, :] + 0.12 * waves, 0, 1)
    elif kind in ("smoke", "fog"):
        grid = np.arange(n, dtype=np.float32)
        for _ in range(14):
            fy, fx = (int(rng.integers(1, 4)), int(rng.integers(1, 5))) if kind == "smoke" else (
                int(rng.integers(1, 3)), int(rng.integers(1, 4)))
            tex += np.sin(2 * np.pi * fy * grid[:, None] / n + rng.uniform(0, 6.3)) * np.sin(
                2 * np.pi * fx * grid[None, :] / n + rng.uniform(0, 6.3)
            )
        tex = smoothstep(0.5 + 0.25 * tex)
    else:
        raise ValueError(f"unknown texture kind {kind!r}")
    return tex.astype(np.float32)
