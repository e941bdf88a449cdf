"""Colour grading of the world per palette (time of day): sky, light, sun or moon, stars, lit windows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Palette:
    """How a time of day colours the scene (all colours linear 0..1 RGB)."""

    sky_top: RGB
    sky_horizon: RGB
    light: RGB
    """Multiplies surface albedo."""
    ambient: RGB
    """Added to every lit surface."""
    sun: RGB
    sun_x: float
    """Sun (or moon) position: fraction of the scene's repeat width."""
    sun_y: float
    """Sun height: fraction of the frame height (0 = top)."""
    sun_radius: float
    """Disc radius in pixels at 128x128."""
    glow: float
    """Strength of the halo around the disc."""
    moon: bool
    stars: float
    """Star visibility 0..1 for ordinary subjects."""
    windows: float
    """Fraction of city windows lit, and their glow."""
    cloud: RGB
    striped_sun: bool = False

    def shade(self, albedo: np.ndarray | RGB) -> np.ndarray:
        """Lit colour of a surface with the given albedo."""
        return np.asarray(albedo, np.float32) * np.asarray(self.light, np.float32) + np.asarray(
            self.ambient, np.float32
        )


PALETTE_DEFS: dict[str, Palette] = {
    "dawn": Palette(
        sky_top=(0.52, 0.58, 0.86),
        sky_horizon=(1.0, 0.72, 0.72),
        light=(1.0, 0.82, 0.86),
        ambient=(0.10, 0.06, 0.12),
        sun=(1.0, 0.93, 0.75),
        sun_x=0.18,
        sun_y=0.42,
        sun_radius=8.0,
        glow=0.55,
        moon=False,
        stars=0.0,
        windows=0.25,
        cloud=(1.0, 0.80, 0.84),
    ),
    "noon": Palette(
        sky_top=(0.12, 0.40, 0.92),
        sky_horizon=(0.62, 0.82, 1.0),
        light=(1.05, 1.05, 1.0),
        ambient=(0.04, 0.05, 0.07),
        sun=(1.0, 1.0, 0.92),
        sun_x=0.62,
        sun_y=0.12,
        sun_radius=7.0,
        glow=0.35,
        moon=False,
        stars=0.0,
        windows=0.08,
        cloud=(1.0, 1.0, 1.0),
    ),
    "sunset": Palette(
        sky_top=(0.60, 0.18, 0.28),
        sky_horizon=(1.0, 0.58, 0.12),
        light=(1.0, 0.55, 0.28),
        ambient=(0.12, 0.03, 0.03),
        sun=(1.0, 0.78, 0.30),
        sun_x=0.42,
        sun_y=0.46,
        sun_radius=12.0,
        glow=0.9,
        moon=False,
        stars=0.0,
        windows=0.45,
        cloud=(1.0, 0.52, 0.30),
    ),
    "dusk": Palette(
        sky_top=(0.10, 0.08, 0.32),
        sky_horizon=(0.62, 0.34, 0.62),
        light=(0.46, 0.38, 0.68),
        ambient=(0.05, 0.03, 0.10),
        sun=(0.95, 0.70, 0.85),
        sun_x=0.80,
        sun_y=0.52,
        sun_radius=9.0,
        glow=0.45,
        moon=False,
        stars=0.45,
        windows=0.7,
        cloud=(0.50, 0.36, 0.62),
    ),
    "night": Palette(
        sky_top=(0.0, 0.01, 0.06),
        sky_horizon=(0.04, 0.07, 0.20),
        light=(0.16, 0.20, 0.36),
        ambient=(0.0, 0.01, 0.03),
        sun=(0.92, 0.94, 1.0),
        sun_x=0.30,
        sun_y=0.16,
        sun_radius=6.0,
        glow=0.25,
        moon=True,
        stars=1.0,
        windows=0.95,
        cloud=(0.14, 0.16, 0.26),
    ),
    "neon": Palette(
        sky_top=(0.20, 0.0, 0.38),
        sky_horizon=(1.0, 0.12, 0.62),
        light=(0.85, 0.25, 0.95),
        ambient=(0.0, 0.16, 0.24),
        sun=(1.0, 0.90, 0.20),
        sun_x=0.55,
        sun_y=0.40,
        sun_radius=14.0,
        glow=0.6,
        moon=False,
        stars=0.6,
        windows=0.9,
        cloud=(0.30, 0.85, 0.95),
        striped_sun=True,
    ),
}
"""Palette name -> grading; keys equal `spec.PALETTES`."""
