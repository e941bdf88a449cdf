"""Static layout of each subject, painted over the sky on a periodic `Canvas`.

Each builder paints the terrain (shaded by the palette) and returns extra per-pixel maps
(masks, phases) that `render` animates frame by frame.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from models.world.canvas import PERIOD, Canvas, periodic_noise, smoothstep, wrap
from models.world.palettes import Palette

Maps = dict[str, np.ndarray]


def _mix(a: np.ndarray, b: np.ndarray | tuple, t: float) -> np.ndarray:
    return (np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t).astype(np.float32)


def _haze(pal: Palette, color: np.ndarray, t: float) -> np.ndarray:
    """Aerial perspective: fade a colour toward the horizon sky."""
    return _mix(color, pal.sky_horizon, t)


def _nearest(X: np.ndarray, spacing: float, rng: np.random.Generator, jitter: float) -> tuple[np.ndarray, np.ndarray]:
    """For repeated items every `spacing` units: the index of the nearest item per column and the offset to it."""
    count = int(round(PERIOD / spacing))
    spacing = PERIOD / count
    centres = (np.arange(count) + 0.5) * spacing + rng.uniform(-jitter, jitter, count) * spacing
    k = np.floor(X / spacing).astype(int) % count
    dx = wrap(X - centres[k])
    k2 = (k + np.where(dx > 0, 1, -1)) % count
    dx2 = wrap(X - centres[k2])
    use2 = np.abs(dx2) < np.abs(dx)
    return np.where(use2, k2, k), np.where(use2, dx2, dx).astype(np.float32)


def _trees(cv: Canvas, rng: np.random.Generator, spacing: float, base: float, heights: tuple[float, float],
           widths: tuple[float, float], color: np.ndarray, depth: float) -> np.ndarray:
    """A row of layered conifers; returns their mask."""
    k, dx = _nearest(cv.X, spacing, rng, 0.25)
    count = int(round(PERIOD / spacing))
    h = rng.uniform(*heights, count).astype(np.float32)[k]
    hw = rng.uniform(*widths, count).astype(np.float32)[k]
    top = base - h
    rel = np.clip((cv.Y - top) / h, 0, 1)  # 0 at the tip, 1 at the base
    tiers = 0.55 + 0.45 * ((rel * 4.0) % 1.0)
    mask = cv.within(dx, hw * rel * tiers) * (cv.Y > top) * (cv.Y < base)
    trunk = cv.within(dx, 0.9) * (cv.Y >= base - 0.02) * (cv.Y < base + 0.03)
    cv.paint(trunk, color * 0.6 + np.float32(0.05), depth)
    cv.paint(mask, color, depth)
    return mask.astype(np.float32)


def ocean(cv: Canvas, rng: np.random.Generator, pal: Palette) -> Maps:
    """Sky over the open sea to the horizon, a sandy beach along the bottom."""
    hy = 0.5 + rng.uniform(-0.03, 0.03)
    p = np.clip((cv.Y - hy) / (1 - hy), 0, 1)
    far, near = pal.shade((0.03, 0.20, 0.40)), pal.shade((0.04, 0.42, 0.55))
    q = p[..., None]
    water = far * (1 - q) + near * q + 0.35 * np.asarray(pal.sky_horizon, np.float32) * (1 - q)
    sea = cv.below(hy)
    cv.paint(sea, water, 0.9 - 0.6 * p)
    # sun (or moon) glitter path
    dx = wrap(cv.X - pal.sun_x * 128.0, 128.0)
    glitter = np.sin(cv.Y * 128 * 1.9 + 2.5 * np.sin(cv.X * 0.7 + cv.Y * 40)) > -0.1
    path = cv.within(dx, 2.0 + 12.0 * p) * sea * glitter
    strength = 0.25 if pal.moon else 0.55
    cv.paint(path * strength, np.asarray(pal.sun, np.float32), 0.5)
    shore = 0.86 + periodic_noise(rng, cv.X, range(2, 6), 0.025)
    beach = cv.below(shore)
    sand = pal.shade((0.86, 0.74, 0.52))
    cv.paint(beach, sand, 0.15)
    wet = beach * (cv.Y < shore + 0.03)
    cv.paint(wet * 0.5, pal.shade((0.55, 0.47, 0.36)), 0.15)
    return {"water": (sea * (1 - beach)).astype(np.float32), "wave_p": p[:, 0].astype(np.float32),
            "shore": np.broadcast_to(shore, cv.cover.shape).astype(np.float32)}


def forest(cv: Canvas, rng: np.random.Generator, pal: Palette) -> Maps:
    """Two rows of tall dark-green conifers on a grassy floor."""
    back = _haze(pal, pal.shade((0.10, 0.32, 0.22)), 0.3)
    m1 = _trees(cv, rng, 9.0, 0.66, (0.26, 0.36), (4.5, 6.0), back, 0.7)
    cv.paint(cv.below(0.66), pal.shade((0.14, 0.26, 0.10)), 0.6)
    cv.paint(cv.below(0.86 + periodic_noise(rng, cv.X, range(3, 7), 0.015)), pal.shade((0.18, 0.30, 0.08)), 0.25)
    m2 = _trees(cv, rng, 15.0, 0.9, (0.50, 0.68), (7.0, 10.0), pal.shade((0.04, 0.22, 0.07)), 0.4)
    return {"trees": np.maximum(m1, m2)}


def city(cv: Canvas, rng: np.random.Generator, pal: Palette) -> Maps:
    """A skyline of rectangular towers with a grid of windows, a street along the bottom."""
    windows = np.zeros(cv.cover.shape, np.float32)
    win_u = np.zeros(cv.cover.shape, np.float32)
    for layer, (spacing, top_range, albedo, depth, haze) in enumerate((
        (13.0, (0.28, 0.50), (0.38, 0.42, 0.50), 0.75, 0.3),
        (18.0, (0.16, 0.62), (0.20, 0.22, 0.28), 0.45, 0.0),
    )):
        k, dx = _nearest(cv.X, spacing, rng, 0.1)
        count = int(round(PERIOD / spacing))
        hw = (rng.uniform(0.32, 0.48, count) * spacing).astype(np.float32)[k]
        top = rng.uniform(*top_range, count).astype(np.float32)[k]
        body = cv.within(dx, hw) * cv.below(top)
        cv.paint(body, _haze(pal, pal.shade(albedo), haze), depth)
        spire = (rng.random(count) < 0.3)[k] * cv.within(dx, 0.7) * cv.below(top - 0.08) * (cv.Y < top)
        cv.paint(spire, _haze(pal, pal.shade(albedo), haze), depth)
        # windows: 2x2 px cells every 4 px, inside the body with a margin
        px = np.floor((dx + hw) * cv.scale).astype(int)
        col_ok = ((px % 4) >= 2) & (np.abs(dx) < hw - 1.5)
        row_px = np.floor((cv.Y - top) * cv.height).astype(int)
        row_ok = (row_px >= 3) & ((row_px % 5) >= 3) & (cv.Y < 0.86)
        win = (col_ok & row_ok).astype(np.float32) * body
        cell = (k * 97 + layer * 7919 + px // 4).astype(np.float64) * 12.9898 + (row_px // 5) * 78.233
        u = np.modf(np.abs(np.sin(cell) * 43758.5453))[0].astype(np.float32)
        win_u = np.where(win > 0, u, win_u)
        windows = np.maximum(windows, win)
    glass = pal.shade((0.55, 0.65, 0.80)) * 0.8
    cv.paint(windows, glass, 0.5)
    cv.paint(cv.below(0.88), pal.shade((0.13, 0.13, 0.15)), 0.2)
    cv.paint(cv.below(0.93) * (cv.Y < 0.935), pal.shade((0.6, 0.6, 0.5)), 0.2)
    return {"windows": windows, "win_u": win_u}


def mountains(cv: Canvas, rng: np.random.Generator, pal: Palette) -> Maps:
    """Jagged snow-capped peaks over a distant blue range and green foothills."""
    far = 0.42 + periodic_noise(rng, cv.X, range(3, 12), 0.07)
    cv.paint(cv.below(far), _haze(pal, pal.shade((0.40, 0.45, 0.58)), 0.45), 0.85)
    k, dx = _nearest(cv.X, 64.0, rng, 0.15)
    peak = rng.uniform(0.14, 0.24, 4).astype(np.float32)[k]
    slope = rng.uniform(0.011, 0.016, 4).astype(np.float32)[k]
    ridge = peak + np.abs(dx) * slope + periodic_noise(rng, cv.X, range(8, 24), 0.025)
    rock = cv.below(ridge)
    shade = np.where(dx[..., None] < 0, 1.0, 0.72).astype(np.float32)
    cv.paint(rock, pal.shade((0.42, 0.38, 0.40)) * shade, 0.6)
    snowline = ridge + 0.09 + periodic_noise(rng, cv.X, range(10, 30), 0.02)
    cv.paint(rock * (cv.Y < snowline), pal.shade((0.95, 0.96, 1.0)) * shade, 0.6)
    hills = 0.76 + periodic_noise(rng, cv.X, range(2, 6), 0.04)
    cv.paint(cv.below(hills), pal.shade((0.20, 0.36, 0.16)), 0.3)
    return {"ground": cv.below(hills).astype(np.float32)}


def desert(cv: Canvas, rng: np.random.Generator, pal: Palette) -> Maps:
    """Smooth orange dunes under a wide sky, a few cacti."""
    ground = np.zeros(cv.cover.shape, np.float32)
    for base, amp, freqs, albedo, depth in (
        (0.60, 0.03, range(2, 5), (0.86, 0.58, 0.34), 0.8),
        (0.70, 0.05, range(2, 4), (0.94, 0.68, 0.38), 0.5),
        (0.84, 0.05, range(1, 4), (0.98, 0.74, 0.42), 0.25),
    ):
        profile = base + periodic_noise(rng, cv.X, freqs, amp)
        slope = np.gradient(profile, axis=1) * cv.height
        fade = np.exp(-np.maximum(cv.Y - profile, 0) * 14.0)
        lit = np.clip(0.86 - slope * 1.6, 0.6, 1.08) * fade + 0.86 * (1 - fade)
        mask = cv.below(profile)
        cv.paint(mask, pal.shade(albedo) * lit[..., None], depth)
        ground = np.maximum(ground, mask)
    k, dx = _nearest(cv.X, 85.0, rng, 0.3)
    base = 0.86 + rng.uniform(-0.02, 0.02, 3).astype(np.float32)[k]
    trunk = cv.within(dx, 1.6) * cv.below(base - 0.2) * (cv.Y < base)
    arm_x = np.abs(dx) - 4.0
    arms = cv.within(arm_x, 1.2) * cv.below(base - 0.14) * (cv.Y < base - 0.06)
    bar = (np.abs(dx) < 5.0) * (cv.Y > base - 0.075) * (cv.Y < base - 0.055)
    cv.paint(np.maximum(np.maximum(trunk, arms), bar), pal.shade((0.12, 0.35, 0.14)), 0.25)
    return {"ground": ground}


def night_sky(cv: Canvas, rng: np.random.Generator, pal: Palette) -> Maps:
    """A tall starry sky with a glowing band, over low dark hills and a lone tree."""
    band = np.exp(-((cv.Y - 0.25 - 0.12 * np.sin(2 * np.pi * cv.X / PERIOD)) / 0.09) ** 2)
    cv.paint(band * 0.22, np.asarray(_mix(pal.sky_horizon, (0.9, 0.9, 1.0), 0.5)), 1.0, terrain=False)
    hills = 0.80 + periodic_noise(rng, cv.X, range(2, 7), 0.05)
    dark = pal.shade((0.05, 0.05, 0.07)) * 0.5
    cv.paint(cv.below(hills), dark, 0.3)
    k, dx = _nearest(cv.X, 128.0, rng, 0.2)
    tree = cv.within(dx, 1.0) * cv.below(hills - 0.12) * (cv.Y < hills + 0.01)
    crown = np.clip(1.0 - (dx / 7.0) ** 2 - ((cv.Y - (hills - 0.14)) / 0.06) ** 2, 0, 1) > 0
    cv.paint(np.maximum(tree, crown), dark, 0.3)
    return {"band": band.astype(np.float32)}


def waterfall(cv: Canvas, rng: np.random.Generator, pal: Palette) -> Maps:
    """A white column of falling water between rock cliffs, into a blue-green pool."""
    cliff_top = 0.2 + periodic_noise(rng, cv.X, range(4, 12), 0.05)
    strata = 1.0 + 0.12 * np.sin(cv.X * 1.3 + 4 * np.sin(cv.Y * 9)) + 0.08 * np.sin(cv.Y * 70)
    rock = cv.below(cliff_top)
    cv.paint(rock, pal.shade((0.36, 0.30, 0.26))[None, None, :] * strata[..., None], 0.5)
    cv.paint(rock * (cv.Y < cliff_top + 0.05), pal.shade((0.14, 0.38, 0.12)), 0.5)
    dx = wrap(cv.X - 64.0 - rng.uniform(-8, 8), 128.0)
    half = 13.0 + 3.0 * cv.Y
    fall = cv.within(dx, half) * (cv.Y > 0.24) * (cv.Y < 0.80)
    cv.paint(fall, pal.shade((0.80, 0.90, 0.98)), 0.45)
    pool = cv.below(0.80)
    cv.paint(pool, pal.shade((0.10, 0.38, 0.46)) + 0.2 * np.asarray(pal.sky_horizon, np.float32), 0.3)
    foam = pool * np.exp(-(dx / (half * 1.6)) ** 2) * np.exp(-((cv.Y - 0.82) / 0.05) ** 2)
    cv.paint(foam, pal.shade((0.9, 0.95, 1.0)), 0.3)
    return {"fall": fall.astype(np.float32), "pool": pool.astype(np.float32), "foam": foam.astype(np.float32)}


def volcano(cv: Canvas, rng: np.random.Generator, pal: Palette) -> Maps:
    """A dark cone with a glowing crater, lava streams down its flanks and a rising smoke plume."""
    dx = wrap(cv.X - 64.0 - rng.uniform(-6, 6), 128.0)
    summit = 0.3 + rng.uniform(-0.03, 0.03)
    profile = summit + np.maximum(np.abs(dx) - 7.0, 0) * 0.0105 + periodic_noise(rng, cv.X, range(10, 25), 0.01)
    cone = cv.below(profile)
    cv.paint(cone, pal.shade((0.20, 0.15, 0.14)) * 0.8, 0.55)
    cv.paint(cv.below(0.84), pal.shade((0.14, 0.11, 0.10)), 0.3)
    lava = np.zeros(cv.cover.shape, np.float32)
    for side in rng.choice([-1.0, 1.0], 3) * rng.uniform(0.35, 0.85, 3):
        path = side * np.clip((cv.Y - summit) / (0.84 - summit), 0, 1) * 38.0 + 2.0 * np.sin(cv.Y * 40 + side)
        lava = np.maximum(lava, cv.within(dx - path, 1.4) * cone * (cv.Y < 0.86))
    crater = cv.within(dx, 7.5) * (cv.Y > summit - 0.005) * (cv.Y < summit + 0.035)
    lava = np.maximum(lava, crater.astype(np.float32))
    width = 6.0 + np.clip(summit - cv.Y, 0, 1) * 80.0
    plume = np.exp(-(((dx - np.clip(summit - cv.Y, 0, 1) * 30.0) / width) ** 2)) * (cv.Y < summit)
    plume = plume * smoothstep((summit - cv.Y) / 0.05)
    glow = np.exp(-(dx / 22.0) ** 2 - ((cv.Y - summit) / 0.12) ** 2)
    cv.paint(glow * 0.35 * (1 - cone), np.array((1.0, 0.35, 0.05), np.float32), 1.0, terrain=False)
    return {"lava": lava.astype(np.float32), "plume": plume.astype(np.float32)}


BUILDERS: dict[str, Callable[[Canvas, np.random.Generator, Palette], Maps]] = {
    "ocean": ocean,
    "forest": forest,
    "city": city,
    "mountains": mountains,
    "desert": desert,
    "night_sky": night_sky,
    "waterfall": waterfall,
    "volcano": volcano,
}
"""Subject name -> static builder; keys equal `spec.SUBJECTS`."""
