"""Render animated frames of a `SceneSpec` with numpy: camera, moving parts, weather.

Every frame is a pure function of (spec, seed, t, size): the static layers come from a cache,
everything that moves is an analytic function of the time `t / FPS`, so any frame can be
rendered directly (no state, no drift, no freeze however long a clip runs).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from models.world.canvas import PERIOD, streak_texture
from models.world.palettes import PALETTE_DEFS
from models.world.spec import SceneSpec
from models.world.static import LAYOUT_VARIANTS, StaticScene, static_scene

FPS = 24
"""Frames per second of world time."""

PACE_SPEED: dict[str, float] = {"calm": 0.5, "lively": 1.5}
"""Multiplier of all motion per pace."""

PAN_UNITS_PER_S = 10.0
"""Camera pan speed at pace speed 1, in 1/128 frame widths per second."""

ZOOM_PERIOD_S = 16.0
ZOOM_MAX = 1.6
TAU = 2 * np.pi


class _View:
    """Where the camera looks at one instant: the canvas rows/cols of each frame pixel."""

    def __init__(self, spec: SceneSpec, tau: float, size: int) -> None:
        scale = size / 128.0
        zoom = 1.0
        x0 = 0.0
        if spec.camera == "pan_left":
            x0 = -PAN_UNITS_PER_S * tau
        elif spec.camera == "pan_right":
            x0 = PAN_UNITS_PER_S * tau
        elif spec.camera == "zoom_in":
            p = (tau / ZOOM_PERIOD_S) % 1.0
            ramp = p / 0.85 if p < 0.85 else 0.5 + 0.5 * np.cos(np.pi * (p - 0.85) / 0.15)
            zoom = 1.0 + (ZOOM_MAX - 1.0) * ramp
        x0 = (x0 % PERIOD) * scale
        self.frac = float(x0 - np.floor(x0))
        """Sub-pixel part of a pan: the frame is rendered one column wider and interpolated."""
        x0 = np.floor(x0) / scale
        centre = np.arange(size, dtype=np.float64) + 0.5 - size / 2
        wide = np.arange(size + (self.frac > 0), dtype=np.float64) + 0.5 - size / 2
        self.xu = (x0 + 64.0 + wide / scale / zoom).astype(np.float32)
        """World x of each column, in 1/128 units."""
        self.yf = (0.5 + centre / size / zoom).astype(np.float32)
        """World y of each row, as a fraction of the height."""
        self.cols = np.floor(self.xu * scale).astype(np.intp) % (2 * size)
        self.rows = None if zoom == 1.0 else np.clip(np.floor(self.yf * size).astype(np.intp), 0, size - 1)
        self.height = size
        self.scale = scale

    def gather(self, layer: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """Sample a canvas layer (H, Wc, ...) at this view."""
        if self.rows is not None:
            layer = layer.take(self.rows, axis=0)
        return layer.take(self.cols if cols is None else cols, axis=1)

    def world_rows(self) -> np.ndarray:
        """Canvas row index of each frame row."""
        return np.arange(self.height) if self.rows is None else self.rows


def _blend(frame: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> None:
    frame += alpha[..., None] * (color - frame)


def _ocean(frame: np.ndarray, st: StaticScene, v: _View, tau: float) -> None:
    water = v.gather(st.maps["water"])
    p = st.maps["wave_p"].take(v.world_rows())
    a = 5.0 / (p + 0.1) + 2.0 * tau
    b = 0.9 * np.sin(TAU * 3 * v.xu / PERIOD) + 0.5 * np.sin(TAU * 7 * v.xu / PERIOD + 1.0)
    crest = np.clip((np.sin(a[:, None] + b[None, :]) - 0.45) * 2.2, 0, 1) * (0.1 + 0.45 * p)[:, None]
    foam = st.light_rgb * 0.85 + 0.1
    _blend(frame, crest * water, foam)
    d = v.gather(st.maps["shore"]) - v.yf[:, None]
    swash = 0.02 + 0.015 * np.sin(1.2 * tau + TAU * 2 * v.xu / PERIOD)
    surf = np.clip(1.0 - np.abs(d - swash[None, :]) * v.height * 0.5, 0, 1) * water
    _blend(frame, surf * 0.8, foam)


def _forest(frame: np.ndarray, st: StaticScene, v: _View, tau: float) -> None:
    trees = v.gather(st.maps["trees"])
    rustle = 0.10 * np.outer(np.sin(v.yf * v.height * 0.7 - 1.7 * tau), np.sin(v.xu * 0.9 + 2.2 * tau))
    frame *= (1.0 + trees * rustle)[..., None]


def _city(frame: np.ndarray, st: StaticScene, v: _View, tau: float, lit_fraction: float, neon: bool) -> None:
    windows = v.gather(st.maps["windows"])
    u = v.gather(st.maps["win_u"])
    lit = np.clip((lit_fraction - u + 0.06 * np.sin(u * 40.0 + 0.8 * tau)) * 10.0, 0, 1) * windows
    warm = np.float32([1.0, 0.84, 0.45])
    if neon:
        cyan = np.float32([0.3, 1.0, 1.0])
        pink = np.float32([1.0, 0.35, 0.85])
        emit = np.where((u * 7.0 % 1.0 < 0.5)[..., None], cyan, pink)
        frame += lit[..., None] * (emit - frame)
    else:
        _blend(frame, lit, warm)
    spots = np.clip((np.cos(TAU * (v.xu - 20.0 * tau) / 16.0) - 0.8) * 6, 0, 1) * (
        np.sin(TAU * 3 * v.xu / PERIOD) > -0.3
    )
    tails = np.clip((np.cos(TAU * (v.xu + 14.0 * tau) / 21.0) - 0.8) * 6, 0, 1)
    lane1 = (np.abs(v.yf - 0.905) < 0.009).astype(np.float32)
    lane2 = (np.abs(v.yf - 0.955) < 0.009).astype(np.float32)
    _blend(frame, np.outer(lane1, spots), np.float32([1.0, 0.95, 0.75]))
    _blend(frame, np.outer(lane2, tails), np.float32([1.0, 0.12, 0.08]))


def _mountains(frame: np.ndarray, st: StaticScene, v: _View, tau: float) -> None:
    band = 0.35 * np.exp(-(((v.yf - 0.68) / 0.05) ** 2))
    drift = 0.5 + 0.5 * np.sin(TAU * 3 * v.xu / PERIOD - 0.3 * tau) * np.sin(TAU * 5 * v.xu / PERIOD + 0.2 * tau)
    _blend(frame, np.outer(band, drift).astype(np.float32), st.fog_rgb * 0.5 + st.light_rgb * 0.45)


def _desert(frame: np.ndarray, st: StaticScene, v: _View, tau: float) -> None:
    ground = v.gather(st.maps["ground"])
    sand = np.sin(v.xu[None, :] * 0.5 - 6.0 * tau + v.yf[:, None] * v.height * 0.9)
    frame *= (1.0 + 0.07 * ground * np.clip(sand, 0, 1))[..., None]
    shimmer = 0.05 * np.exp(-(((v.yf - 0.6) / 0.02) ** 2))[:, None] * np.sin(v.xu * 1.3 + 5.0 * tau)[None, :]
    frame *= (1.0 + shimmer)[..., None]


def _night_sky(frame: np.ndarray, st: StaticScene, v: _View, tau: float) -> None:
    sky = v.gather(st.sky)
    x = TAU * v.xu / PERIOD
    centre = 0.3 + 0.07 * np.sin(2 * x + 0.35 * tau) + 0.03 * np.sin(5 * x - 0.6 * tau)
    curtain = 0.55 + 0.45 * np.sin(9 * x + 0.9 * tau)
    aurora = np.exp(-(((v.yf[:, None] - centre[None, :]) / 0.05) ** 2)) * curtain[None, :] * sky * 0.55
    frame += aurora[..., None] * np.float32([0.12, 0.85, 0.5])


def _waterfall(frame: np.ndarray, st: StaticScene, v: _View, tau: float) -> None:
    size = v.height
    fall = v.gather(st.maps["fall"])
    tex = streak_texture(size, 0, "flow")
    shift = int(60.0 * tau * v.scale) % size
    flow = tex.take((v.world_rows() - shift) % size, axis=0).take(v.cols % size, axis=1)
    frame += ((flow - 0.5) * 0.55 * fall)[..., None]
    pool = v.gather(st.maps["pool"])
    ripple = 0.06 * np.outer(np.sin(v.yf * size * 1.2 - 3.0 * tau), np.sin(v.xu * 0.5))
    frame *= (1.0 + pool * ripple)[..., None]
    foam = v.gather(st.maps["foam"]) * (0.2 + 0.15 * np.sin(4.0 * tau + v.xu * 0.4))[None, :]
    _blend(frame, foam, st.light_rgb * 0.9 + 0.1)


def _volcano(frame: np.ndarray, st: StaticScene, v: _View, tau: float) -> None:
    size = v.height
    lava = v.gather(st.maps["lava"])
    pulse = 0.7 + 0.3 * np.sin(v.yf * size * 0.35 - 3.0 * tau)
    _blend(frame, lava * pulse[:, None], np.float32([1.0, 0.42, 0.06]))
    plume = v.gather(st.maps["plume"])
    tex = streak_texture(size, 1, "smoke")
    shift = int(14.0 * tau * v.scale) % size
    smoke = tex.take((v.world_rows() + shift) % size, axis=0).take(v.cols % size, axis=1)
    grey = st.light_rgb * 0.32 + np.float32([0.08, 0.05, 0.04])
    _blend(frame, plume * (0.3 + 0.6 * smoke), grey)


_ANIMATORS: dict[str, Callable[[np.ndarray, StaticScene, _View, float], None]] = {
    "ocean": _ocean,
    "forest": _forest,
    "mountains": _mountains,
    "desert": _desert,
    "night_sky": _night_sky,
    "waterfall": _waterfall,
    "volcano": _volcano,
}


def _weather(frame: np.ndarray, spec: SceneSpec, st: StaticScene, seed: int, tau: float, size: int) -> None:
    if spec.weather == "clear":
        return
    rows, cols = np.arange(size), np.arange(size)
    scale = size / 128.0
    if spec.weather == "fog":
        tex = streak_texture(size, seed % LAYOUT_VARIANTS, "fog")
        shift = int(6.0 * tau * scale)
        layer = tex.take((cols - shift) % size, axis=1)
        _blend(frame, 0.32 * layer, st.fog_rgb)
        return
    kind = spec.weather
    tex = streak_texture(size, seed % LAYOUT_VARIANTS, kind)
    if kind == "rain":
        layers = ((110.0, 36.0, 0.55), (70.0, 22.0, 0.3))
        color = st.light_rgb * 0.55 + 0.3
    else:
        layers = ((22.0, 0.0, 0.9), (11.0, 0.0, 0.6))
        color = st.light_rgb * 0.25 + 0.72
    for k, (fall, slide, strength) in enumerate(layers):
        fy = fall * tau * scale
        sy, wy = int(fy) + k * size // 2, fy - int(fy)
        sway = 5.0 * np.sin(0.7 * tau + k) if kind == "snow" else 0.0
        sx = int((slide * tau + sway) * scale) + k * size // 3
        near = tex.take((cols - sx) % size, axis=1)
        layer = (1.0 - wy) * near.take((rows - sy) % size, axis=0) + wy * near.take((rows - sy - 1) % size, axis=0)
        _blend(frame, strength * layer, color)


def render_frame(spec: SceneSpec, seed: int, t: int, size: int = 128) -> np.ndarray:
    """Frame `t` (at `FPS`) of the clip of `spec` with `seed`: uint8 [size, size, 3]."""
    st = static_scene(spec, int(seed), int(size))
    pal = PALETTE_DEFS[spec.palette]
    tau = float(t) / FPS * PACE_SPEED[spec.pace]
    v = _View(spec, tau, size)
    frame = v.gather(st.bg)
    if st.stars is not None:
        twinkle = 0.55 + 0.45 * np.sin(v.gather(st.star_phase) + 2.5 * tau)
        frame += (v.gather(st.stars) * twinkle)[..., None]
    if st.clouds is not None:
        drift = np.floor((v.xu - 4.0 * tau) * v.scale).astype(np.intp) % (2 * size)
        alpha = v.gather(st.clouds, drift) * v.gather(st.sky)
        frame += alpha[..., None] * (v.gather(st.cloud_rgb[:, :1], np.zeros(1, np.intp)) - frame)
    if spec.subject == "city":
        _city(frame, st, v, tau, pal.windows, pal.striped_sun)
    else:
        _ANIMATORS[spec.subject](frame, st, v, tau)
    if v.frac > 0:
        frame = (1.0 - v.frac) * frame[:, :-1] + v.frac * frame[:, 1:]
    _weather(frame, spec, st, int(seed), tau, size)
    np.clip(frame, 0.0, 1.0, out=frame)
    frame *= 255.0
    frame += 0.5
    return frame.astype(np.uint8)


def render_clip(spec: SceneSpec, seed: int, num_frames: int, size: int = 128, start_frame: int = 0) -> np.ndarray:
    """Frames `start_frame ..` of the clip of `spec` with `seed`: uint8 [num_frames, size, size, 3]."""
    out = np.empty((num_frames, size, size, 3), np.uint8)
    for k in range(num_frames):
        out[k] = render_frame(spec, seed, start_frame + k, size)
    return out
