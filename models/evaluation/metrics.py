"""Pixel statistics of frame sequences: frame-to-frame change, brightness, colour spread, detail, PSNR."""

from __future__ import annotations

import numpy as np


def frame_changes(clips: np.ndarray) -> np.ndarray:
    """Mean absolute pixel change (0-255) between consecutive frames: `[S, T, H, W, 3]` -> `[S, T-1]`."""
    x = clips.astype(np.int16)
    return np.abs(x[:, 1:] - x[:, :-1]).mean(axis=(2, 3, 4))


def brightness(frames: np.ndarray) -> np.ndarray:
    """Mean pixel value (0-255) of each frame `[..., H, W, 3]`."""
    return frames.astype(np.float32).mean(axis=(-3, -2, -1))


def colour_spread(frames: np.ndarray) -> np.ndarray:
    """Standard deviation of all pixel values of each frame: near 0 for a blank or flat brown frame."""
    flat = frames.reshape(*frames.shape[:-3], -1).astype(np.float32)
    return flat.std(axis=-1)


def edge_energy(frames: np.ndarray) -> float:
    """Mean absolute difference (0-255) between horizontally and vertically neighbouring pixels of
    `[..., H, W, 3]` frames: what blur takes away (edges of towers, trees, stars)."""
    x = frames.astype(np.float32)
    return float((np.abs(np.diff(x, axis=-2)).mean() + np.abs(np.diff(x, axis=-3)).mean()) / 2)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over frames of the peak signal-to-noise ratio (peak 255) of frames `[N, H, W, 3]`."""
    mse = ((a.astype(np.float64) - b) ** 2).reshape(len(a), -1).mean(axis=1)
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))))


def cell_means(frames: np.ndarray, cell: int) -> np.ndarray:
    """Frames `[N, H, W, 3]` as the means of `cell`-pixel square cells, `[N, H / cell, W / cell, 3]` (float)."""
    n, h, w, c = frames.shape
    return frames.reshape(n, h // cell, cell, w // cell, cell, c).astype(np.float64).mean(axis=(2, 4))


def rnd(value: float | None, digits: int = 4) -> float | None:
    """Round for the report (None stays None)."""
    return None if value is None else round(float(value), digits)
