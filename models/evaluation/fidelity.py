"""Fidelity: do streamed frames look like the world's own renders of the scene that was asked for?

For every subject x palette pair, in clear weather, calm, with a static camera, a stream starts from
text alone (the scene's canonical caption, no previous frame) and its frames at a few times are set
beside the world's renders of that scene over all of its layouts:

- layout: PSNR of 32x32 cell means against the nearest world frame of the pair (layout and colour,
  whatever fine texture the stream draws);
- sharpness: mean gradient magnitude over the world's (below 1 is blur, above 1 is streaks and grain);
- change: mean absolute frame-to-frame change over the world's own on these static, calm scenes.

Beside them, the same figures for the world's own frames at other moments, for the model's
autoencoder round trip of world frames (the best a decoded frame can do) and for the average of the
scene's layouts in latent space through the decoder (what one step from text alone aims at: the
average of what the text allows), and teacher-forced one-frame PSNR (each frame made from the world's
previous frame), whose gap to the rollout is exposure bias. A contact sheet (world | stream at each
time, per pair) shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.engine import StreamingEngine
from models.evaluation.metrics import cell_means, edge_energy, psnr, rnd
from models.evaluation.rollout import rollout
from models.world import FPS, PALETTES, SUBJECTS, SceneSpec, describe, render_clip, render_frame
from models.world.static import LAYOUT_VARIANTS

LAYOUT_CELL = 4
"""Layout PSNR compares 4x4-pixel cell means: 32x32 at 128x128."""
REFERENCE_MOMENTS = tuple(range(0, 128 * FPS, 2 * FPS))
"""World frames per layout in the reference set: every 2 s over 128 s, the time a calm scene's clouds take to
drift once round (what else moves, water and stars, repeats sooner); a cloud moves 4 pixels in 2 s."""
OTHER_MOMENT = 83 * FPS + 5
"""The world's own figure: each pair's frames at this other moment (off the reference's grid), of every layout."""
TARGETS = {"layout_psnr_db": (">=", 27.0), "sharpness_ratio": ("range", (0.85, 1.15)), "change_ratio": ("<=", 3.0)}


@dataclass(frozen=True)
class FidelitySettings:
    """Sizes of the fidelity section; `quick()` is a smoke run."""

    seconds: tuple[float, ...] = (1.0, 3.0, 10.0)
    streams_per_pair: int = 1
    layouts: int = LAYOUT_VARIANTS
    subjects: tuple[str, ...] = SUBJECTS
    palettes: tuple[str, ...] = PALETTES
    seed: int = 0
    batch: int = 48

    @classmethod
    def quick(cls, **overrides: Any) -> FidelitySettings:
        """Two pairs, four layouts, frames after a few tenths of a second."""
        base = dict(seconds=(0.125, 0.25), layouts=4, subjects=SUBJECTS[:2], palettes=PALETTES[:1], batch=8)
        return cls(**{**base, **overrides})

    def pairs(self) -> list[SceneSpec]:
        """The clear, calm, static scene of each subject x palette pair."""
        return [SceneSpec(s, p, "clear", "calm", "static") for s in self.subjects for p in self.palettes]


def pair_name(spec: SceneSpec) -> str:
    """`mountains/sunset`: how the report names a pair."""
    return f"{spec.subject}/{spec.palette}"


def _flat_cells(frames: np.ndarray) -> np.ndarray:
    return cell_means(frames, LAYOUT_CELL).reshape(len(frames), -1)


class LayoutReference:
    """The world's frames of one scene as 32x32 cell means, for nearest-frame layout PSNR."""

    def __init__(self, frames: np.ndarray) -> None:
        self.cells = _flat_cells(frames)
        self._norms = (self.cells**2).sum(1)

    @classmethod
    def of_scene(cls, spec: SceneSpec, layouts: int) -> LayoutReference:
        """The world's frames of `spec` over its first `layouts` layouts at `REFERENCE_MOMENTS`."""
        return cls(np.stack([render_frame(spec, layout, m) for layout in range(layouts) for m in REFERENCE_MOMENTS]))

    def distances(self, frames: np.ndarray) -> np.ndarray:
        """Mean squared difference of cell means from each frame to each reference frame: `[N, R]`."""
        a = _flat_cells(frames)
        squared = (a**2).sum(1)[:, None] + self._norms[None, :] - 2 * a @ self.cells.T
        return np.maximum(squared, 1e-10) / a.shape[1]

    def psnr(self, frames: np.ndarray) -> np.ndarray:
        """Per frame, the PSNR (peak 255) of its cell means against the nearest reference frame's."""
        return 10 * np.log10(255.0**2 / self.distances(frames).min(axis=1))


def mean_change(first: np.ndarray, second: np.ndarray) -> float:
    """Mean absolute pixel change (0-255) from each frame of `first` to the same-index frame of `second`."""
    return float(np.abs(second.astype(np.int16) - first.astype(np.int16)).mean())


@dataclass
class _Row:
    """One pair's (or the whole set's) figures at one time of the stream."""

    layout: list[float]
    edges: float
    world_edges: float
    change: float
    world_change: float

    def report(self) -> dict[str, float | None]:
        return {
            "layout_psnr_db": rnd(float(np.mean(self.layout)), 2),
            "sharpness_ratio": rnd(self.edges / max(self.world_edges, 1e-6), 3),
            "change_ratio": rnd(self.change / max(self.world_change, 1e-6), 2),
        }


def _check(name: str, value: float | None) -> dict[str, Any]:
    op, bound = TARGETS[name]
    if value is None:
        ok = False
    elif op == "range":
        ok = bound[0] <= value <= bound[1]
    else:
        ok = value >= bound if op == ">=" else value <= bound
    shown = f"{bound[0]}-{bound[1]}" if op == "range" else f"{op} {bound}"
    return {"value": value, "target": shown, "pass": bool(ok)}


def fidelity(
    engine: StreamingEngine, cfg: FidelitySettings, progress: bool = True, sheet: Path | None = None
) -> dict[str, Any]:
    """The fidelity report (see the module docstring); writes the contact sheet to `sheet` if given."""
    from models.evaluation.sections import _autoencode, _decode_raw, _raw_latents

    pairs = cfg.pairs()
    times = [max(2, round(s * FPS)) for s in cfg.seconds]
    keep = sorted({k for t in times for k in (t - 2, t - 1)})  # each time's frame and the one before it
    specs = [s for s in pairs for _ in range(cfg.streams_per_pair)]
    conditions = engine.prompts.encode_all([describe(s) for s in specs])
    seeds = [cfg.seed * 100_000 + 90_000 + i for i in range(len(specs))]
    clips = rollout(engine, conditions, seeds, times[-1], keep, batch=cfg.batch, desc="fidelity", progress=progress)
    slot = {k: i for i, k in enumerate(keep)}

    per_pair: dict[str, dict[str, Any]] = {}
    totals: dict[str, dict[str, list[float]]] = {}
    world_rows: list[dict[str, float]] = []
    round_trip_rows: list[dict[str, float]] = []
    average_rows: list[dict[str, float]] = []
    forced_rows: list[dict[str, float]] = []
    sheet_rows: list[np.ndarray] = []
    for p, spec in enumerate(pairs):
        reference = LayoutReference.of_scene(spec, cfg.layouts)
        # the world at another moment, two consecutive frames per layout (its own change between them)
        others = np.stack([render_clip(spec, layout, 2, start_frame=OTHER_MOMENT) for layout in range(cfg.layouts)])
        world_now, world_next = others[:, 0], others[:, 1]
        world_edges = edge_energy(world_now)
        world_change = mean_change(world_now, world_next)
        through = _autoencode(engine, world_now)
        forced = _teacher_forced(engine, world_now, conditions[p * cfg.streams_per_pair], cfg.seed + p)
        world_rows.append(
            {"layout": float(reference.psnr(world_now).mean()), "edges": world_edges, "change": world_change}
        )
        round_trip_rows.append({"layout": float(reference.psnr(through).mean()), "edges": edge_energy(through)})
        # what one step from text alone aims at: the average, in latent space, of what the text allows
        average = _decode_raw(engine, _raw_latents(engine, world_now).mean(0, keepdim=True))
        average_rows.append({"layout": float(reference.psnr(average).mean()), "edges": edge_energy(average)})
        forced_rows.append(
            {
                "layout": float(reference.psnr(forced).mean()),
                "psnr_vs_next": psnr(forced, _autoencode(engine, world_next)),
            }
        )
        streams = clips[p * cfg.streams_per_pair : (p + 1) * cfg.streams_per_pair]
        rows = {}
        for seconds, t in zip(cfg.seconds, times):
            now, before = streams[:, slot[t - 1]], streams[:, slot[t - 2]]
            row = _Row(
                layout=list(reference.psnr(now)),
                edges=edge_energy(now),
                world_edges=world_edges,
                change=mean_change(before, now),
                world_change=world_change,
            )
            rows[f"{seconds:g}s"] = row.report()
            total = totals.setdefault(f"{seconds:g}s", {k: [] for k in ("layout", "edges", "world_edges", "change")})
            total["layout"].extend(row.layout)
            total["edges"].append(row.edges)
            total["world_edges"].append(world_edges)
            total["change"].append(row.change)
        per_pair[pair_name(spec)] = rows
        best = int(LayoutReference(world_now).distances(streams[:1, slot[times[-1] - 1]])[0].argmin())
        sheet_rows.append(np.concatenate([world_now[best], *(streams[0, slot[t - 1]] for t in times)], axis=1))

    world_change_mean = float(np.mean([r["change"] for r in world_rows]))
    overall = {
        when: _Row(
            layout=t["layout"],
            edges=float(np.mean(t["edges"])),
            world_edges=float(np.mean(t["world_edges"])),
            change=float(np.mean(t["change"])),
            world_change=world_change_mean,
        ).report()
        for when, t in totals.items()
    }
    world_edges_mean = float(np.mean([r["edges"] for r in world_rows]))
    last = overall[f"{cfg.seconds[-1]:g}s"]
    report: dict[str, Any] = {
        "pairs": len(pairs),
        "streams_per_pair": cfg.streams_per_pair,
        "layouts": cfg.layouts,
        "overall": overall,
        "world": {
            "layout_psnr_db": rnd(float(np.mean([r["layout"] for r in world_rows])), 2),
            "mean_abs_change": rnd(world_change_mean, 3),
        },
        "autoencoder_round_trip": {
            "layout_psnr_db": rnd(float(np.mean([r["layout"] for r in round_trip_rows])), 2),
            "sharpness_ratio": rnd(float(np.mean([r["edges"] for r in round_trip_rows])) / world_edges_mean, 3),
        },
        "layout_average": {
            "layout_psnr_db": rnd(float(np.mean([r["layout"] for r in average_rows])), 2),
            "sharpness_ratio": rnd(float(np.mean([r["edges"] for r in average_rows])) / world_edges_mean, 3),
        },
        "teacher_forced": {
            "layout_psnr_db": rnd(float(np.mean([r["layout"] for r in forced_rows])), 2),
            "psnr_vs_next_db": rnd(float(np.mean([r["psnr_vs_next"] for r in forced_rows])), 2),
        },
        "per_pair": per_pair,
        "targets": {name: _check(name, last[name]) for name in TARGETS},
        "units": (
            f"layout: PSNR (dB) of {128 // LAYOUT_CELL}x{128 // LAYOUT_CELL} cell means against the nearest world"
            f" frame of the pair ({cfg.layouts} layouts x {len(REFERENCE_MOMENTS)} moments); sharpness: mean"
            " gradient magnitude over the world's; change: mean absolute frame-to-frame change over the world's"
            " on the same static, calm scenes; teacher-forced: one frame made from the world's previous frame"
        ),
    }
    if sheet is not None:
        write_contact_sheet(sheet_rows, pairs, cfg.seconds, sheet)
        report["contact_sheet"] = sheet.name
    return report


def _teacher_forced(engine: StreamingEngine, frames: np.ndarray, condition: torch.Tensor, seed: int) -> np.ndarray:
    """One frame per world frame, made with that frame (through the autoencoder) as the previous one."""
    from models.evaluation.sections import _encode

    starts = _encode(engine, frames)
    out = rollout(engine, [condition] * len(frames), [seed * 1000 + i for i in range(len(frames))], 1,
                  batch=len(frames), progress=False, starts=starts)  # fmt: skip
    return out[:, 0]


def write_contact_sheet(rows: list[np.ndarray], pairs: list[SceneSpec], seconds: tuple[float, ...], path: Path) -> None:
    """A PNG of one strip per pair (world | stream at each time), the pairs in a subject x palette grid."""
    from PIL import Image, ImageDraw

    palettes = sorted({s.palette for s in pairs}, key=PALETTES.index)
    subjects = sorted({s.subject for s in pairs}, key=SUBJECTS.index)
    tile = 64
    label = 14
    strip_w = tile * (1 + len(seconds))
    gap = 6
    width = len(palettes) * (strip_w + gap)
    height = label + len(subjects) * (tile + label)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    header = "world | " + " | ".join(f"{s:g} s" for s in seconds)
    for col, palette in enumerate(palettes):
        draw.text((col * (strip_w + gap) + 2, 1), f"{palette}: {header}", fill=(0, 0, 0))
    for strip, spec in zip(rows, pairs):
        col, row = palettes.index(spec.palette), subjects.index(spec.subject)
        x, y = col * (strip_w + gap), label + row * (tile + label)
        image = Image.fromarray(strip).resize((strip_w, tile), Image.BILINEAR)
        draw.text((x + 2, y + 1), spec.subject, fill=(0, 0, 0))
        sheet.paste(image, (x, y + label))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
