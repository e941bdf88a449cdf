"""The static layers of one scene, built once per (spec, seed, size) and cached."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from models.world.canvas import Canvas, cloud_alpha, smoothstep, wrap
from models.world.palettes import PALETTE_DEFS, Palette
from models.world.spec import SceneSpec
from models.world.subjects import BUILDERS

LAYOUT_VARIANTS = 32
"""Distinct layouts per subject: the layout seed is `seed % LAYOUT_VARIANTS` (keeps caches small)."""


@dataclass
class StaticScene:
    """Precomputed layers of a scene on a canvas of (size, 2*size) that repeats horizontally."""

    bg: np.ndarray
    """(H, Wc, 3) float32 graded scene without moving parts."""
    sky: np.ndarray
    """(H, Wc) float32, 1 where sky shows."""
    stars: np.ndarray | None
    """(H, Wc) star brightness, or None."""
    star_phase: np.ndarray | None
    clouds: np.ndarray | None
    """(H, Wc) cloud alpha, drifting at render time."""
    cloud_rgb: np.ndarray
    """(H, 1, 3) cloud colour per row."""
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    """Subject-specific animation maps (see `subjects`)."""
    fog_rgb: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    light_rgb: np.ndarray = field(default_factory=lambda: np.ones(3, np.float32))


def _spec_seed(spec: SceneSpec, seed: int) -> list[int]:
    return [int(seed) % (2**32), zlib.crc32(spec.key().encode())]


def _sky(cv: Canvas, pal: Palette, subject: str, horizon: float) -> None:
    top, low = np.asarray(pal.sky_top, np.float32), np.asarray(pal.sky_horizon, np.float32)
    if subject == "night_sky":
        top, low = top * 0.35 + np.float32([0.0, 0.0, 0.03]), low * 0.55 + np.float32([0.0, 0.01, 0.05])
    t = np.clip(cv.Y / horizon, 0, 1) ** 1.3
    cv.rgb[:] = top * (1 - t[..., None]) + low * t[..., None]
    dx = wrap(cv.X - pal.sun_x * 128.0, 128.0)
    dy = (cv.Y - pal.sun_y) * 128.0
    dist = np.sqrt(dx * dx + dy * dy)
    r = pal.sun_radius
    sun = np.asarray(pal.sun, np.float32)
    glow = pal.glow * np.exp(-np.maximum(dist - r, 0) / (2.5 * r))
    cv.rgb += (glow[..., None] * sun * (0.35 if subject == "night_sky" and not pal.moon else 1.0)).astype(np.float32)
    disc = np.clip(r - dist + 0.5, 0, 1)
    if pal.moon:
        bite = np.sqrt((dx - 0.45 * r) ** 2 + (dy + 0.2 * r) ** 2)
        disc = disc * np.clip(bite - r * 0.85 + 0.5, 0, 1)
    if pal.striped_sun:
        stripes = (dy < 0) | (np.sin(dy * 1.1) < 0.2)
        disc = disc * stripes
        sun = sun[None, None, :] * (1 - smoothstep((dy[..., None] + r) / (2 * r))) + np.float32(
            [1.0, 0.2, 0.55]
        ) * smoothstep((dy[..., None] + r) / (2 * r))
    cv.paint(disc, sun, 1.0, terrain=False)


def _stars(rng: np.random.Generator, shape: tuple[int, int], visibility: float) -> tuple[np.ndarray, np.ndarray]:
    height, width = shape
    stars = np.zeros(shape, np.float32)
    count = int(0.02 * height * width)
    ys, xs = rng.integers(0, height, count), rng.integers(0, width, count)
    stars[ys, xs] = rng.uniform(0.35, 1.0, count) ** 2
    big = rng.integers(0, count, count // 25)
    for dy, dx in ((0, 1), (1, 0)):
        stars[(ys[big] + dy) % height, (xs[big] + dx) % width] = 0.7
    phase = rng.uniform(0, 2 * np.pi, shape).astype(np.float32)
    return stars * np.float32(visibility), phase


def _weather(cv: Canvas, spec: SceneSpec, pal: Palette) -> np.ndarray:
    """Bake overcast, wet, snow cover or haze into the canvas; returns the fog colour."""
    grey = pal.shade((0.62, 0.64, 0.68))
    ground = cv.cover[..., None]
    if spec.weather == "rain":
        cv.rgb[:] = cv.rgb * (1 - 0.45 * (1 - ground)) + 0.45 * (1 - ground) * grey * 0.8
        cv.rgb *= 1 - 0.25 * ground
    elif spec.weather == "snow":
        cv.rgb[:] = cv.rgb * (1 - 0.35 * (1 - ground)) + 0.35 * (1 - ground) * grey
        flat = ground * np.float32(0.4)
        cv.rgb[:] = cv.rgb * (1 - flat) + flat * pal.shade((0.95, 0.96, 1.0))
    fog = (0.55 * grey + 0.45 * np.asarray(pal.sky_horizon, np.float32)).astype(np.float32)
    if spec.weather == "fog":
        amount = (0.25 + 0.5 * cv.depth)[..., None]
        cv.rgb[:] = cv.rgb * (1 - amount) + amount * fog
    return fog


@lru_cache(maxsize=256)
def static_scene(spec: SceneSpec, seed: int, size: int = 128) -> StaticScene:
    """Build (or fetch from cache) the static layers of `spec` for `seed` at `size` x `size`."""
    pal = PALETTE_DEFS[spec.palette]
    layout_rng = np.random.default_rng([int(seed) % LAYOUT_VARIANTS, zlib.crc32(spec.subject.encode())])
    cv = Canvas(size, 2 * size)
    _sky(cv, pal, spec.subject, horizon=0.6)
    visibility = max(pal.stars, 0.85) if spec.subject == "night_sky" else pal.stars
    stars = phase = None
    if visibility > 0 and spec.weather not in ("fog",):
        stars, phase = _stars(np.random.default_rng(_spec_seed(spec, seed)), cv.cover.shape, visibility)
        if spec.weather in ("rain", "snow"):
            stars *= np.float32(0.3)
    maps = {
        name: np.ascontiguousarray(np.broadcast_to(m, cv.cover.shape), np.float32) if m.ndim == 2 else m
        for name, m in BUILDERS[spec.subject](cv, layout_rng, pal).items()
    }
    sky = (1.0 - cv.cover).astype(np.float32)
    if stars is not None:
        stars = stars * sky
    fog = _weather(cv, spec, pal)
    clouds = None
    if spec.subject != "night_sky" or spec.weather != "clear":
        amount = {"clear": 0, "fog": 1, "rain": 2, "snow": 2}[spec.weather]
        clouds = cloud_alpha(size, int(seed) % LAYOUT_VARIANTS, amount)
    base = np.asarray(pal.cloud, np.float32) * (0.55 if spec.weather == "rain" else 1.0)
    if spec.weather == "snow":
        base = 0.6 * base + 0.4 * pal.shade((0.85, 0.86, 0.9))
    rows = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    cloud_rgb = (base * (1.08 - 0.5 * rows)).astype(np.float32)
    return StaticScene(
        bg=np.clip(cv.rgb, 0, 1).astype(np.float32),
        sky=sky,
        stars=stars,
        star_phase=phase,
        clouds=clouds,
        cloud_rgb=cloud_rgb,
        maps=maps,
        fog_rgb=fog,
        light_rgb=np.asarray(pal.light, np.float32),
    )
