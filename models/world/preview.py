"""Contact sheets of the world: `python -m models.world.preview [--out PATH] [--t FRAME]`."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models.world.render import render_frame
from models.world.spec import CAMERAS, PACES, PALETTES, SUBJECTS, WEATHERS, SceneSpec


def grid(rows: list[list[np.ndarray]], gap: int = 2) -> np.ndarray:
    """Tile equally sized uint8 images into one image with white gaps."""
    h, w, _ = rows[0][0].shape
    out = np.full((len(rows) * (h + gap) + gap, len(rows[0]) * (w + gap) + gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            out[gap + r * (h + gap) : gap + r * (h + gap) + h, gap + c * (w + gap) : gap + c * (w + gap) + w] = image
    return out


def save_png(image: np.ndarray, path: Path) -> None:
    """Write an RGB uint8 image as PNG (with PIL)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def subject_palette_sheet(t: int = 48, weather: str = "clear", seed: int = 0) -> np.ndarray:
    """Rows: subjects; columns: palettes; one frame each."""
    return grid([[render_frame(SceneSpec(s, p, weather), seed, t) for p in PALETTES] for s in SUBJECTS])


def weather_sheet(t: int = 48, palette: str = "noon", seed: int = 0) -> np.ndarray:
    """Rows: subjects; columns: weathers."""
    return grid([[render_frame(SceneSpec(s, palette, w), seed, t) for w in WEATHERS] for s in SUBJECTS])


def main() -> None:
    """Save the contact sheets under test-artifacts/."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("test-artifacts"))
    parser.add_argument("--t", type=int, default=48)
    args = parser.parse_args()
    save_png(subject_palette_sheet(args.t), args.out / "world-grid.png")
    save_png(weather_sheet(args.t), args.out / "world-weather.png")
    motion = [
        [render_frame(SceneSpec("city", "night", "clear", pace, cam), 0, args.t + k * 24) for k in range(6)]
        for pace in PACES
        for cam in CAMERAS
    ]
    save_png(grid(motion), args.out / "world-motion.png")
    print(f"saved {args.out}/world-grid.png, world-weather.png, world-motion.png")


if __name__ == "__main__":
    main()
