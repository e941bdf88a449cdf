"""Stage 6c: one picture per scene, drawn sharp, and streams that keep it.

One DDIM step from zero-SNR noise returns the average of every picture a text allows: with the world's
32 layouts of each subject as targets, the first frame is their blur, and whatever a stream starts from,
it falls back to that blur within a frame. Here the first frames of each subject aim at one of its
layouts instead, the medoid (the layout nearest, at the fidelity evaluation's 32x32 cells, to the
subject's others), at the first few moments of its clip. The target of a first frame is then a single
picture, which a regression can draw sharp, and the rows after the model's own first frames aim at the
nearest of those moments, so that a stream keeps what it drew. The rest of every batch is the rollout
stage's recipe over all layouts, so that any clean previous frame is still carried on.

The cost is variety: a subject's first frame is always the same layout (its palette, weather and motion
still follow the text).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderTiny, DDIMScheduler, UNet2DConditionModel
from tqdm import tqdm

from models.evaluation.metrics import cell_means
from models.text import TextEncoder
from models.world import PALETTES, SUBJECTS, SceneSpec, describe, render_clip
from models.world.static import LAYOUT_VARIANTS

from .autoencoder import to_unit_range
from .config import TrainConfig
from .denoiser import fine_tune
from .first_frames import StillBank, first_frames_batch
from .world_data import ClipBank

LAYOUT_CELL = 4
"""Layouts are compared at 4x4-pixel cell means (32x32), as the fidelity evaluation compares them."""


def medoid_layouts(layouts: int = LAYOUT_VARIANTS) -> dict[str, int]:
    """Each subject's medoid layout: the one whose first frames (clear, calm, static, in every palette) are
    nearest, summed over palettes, to those of the subject's other layouts."""
    chosen: dict[str, int] = {}
    for subject in tqdm(SUBJECTS, desc="medoid layouts", unit="subject"):
        total = np.zeros((layouts, layouts))
        for palette in PALETTES:
            spec = SceneSpec(subject=subject, palette=palette)
            frames = np.stack([render_clip(spec, layout, 1)[0] for layout in range(layouts)])
            cells = cell_means(frames, LAYOUT_CELL).reshape(layouts, -1).astype(np.float64)
            total += ((cells[:, None] - cells[None]) ** 2).sum(-1)
        chosen[subject] = int(total.sum(1).argmin())
    return chosen


@torch.no_grad()
def build_pinned_stills(
    bank: ClipBank,
    moments: int,
    layouts: dict[str, int],
    vae: AutoencoderTiny,
    scale: float,
    text: TextEncoder,
) -> StillBank:
    """For each bank clip, the first `moments` frames of its scene at its subject's pinned layout, encoded, and
    the scene's canonical caption embedded (a `StillBank`, so the first-frames batch maker reads it)."""
    specs = sorted(set(bank.specs), key=SceneSpec.key)
    encoded: dict[SceneSpec, torch.Tensor] = {}
    for spec in tqdm(specs, desc="render + encode pinned stills", unit="scene"):
        frames = render_clip(spec, layouts[spec.subject], moments)
        encoded[spec] = (vae.encoder(to_unit_range(frames).to(vae.device)) * scale).half().cpu()
    captions = [describe(spec) for spec in specs]
    states = dict(zip(specs, text.encode(captions).half().cpu()))
    return StillBank(
        latents=torch.stack([encoded[spec] for spec in bank.specs]),
        canonical=torch.stack([states[spec] for spec in bank.specs]),
    )


def train_pinning(
    config: TrainConfig,
    bank: ClipBank,
    pinned: StillBank,
    scheduler: DDIMScheduler,
    unet: UNet2DConditionModel,
    work_dir: Path,
    device: torch.device | str = "cpu",
) -> tuple[UNet2DConditionModel, list[float]]:
    """Stage 6c: first frames aim at the subject's pinned layout, and frames after the model's own first frames
    at the nearest of its first moments (resuming from `work_dir`); returns the EMA weights and the loss curve."""
    shares = (config.pin_first_share, config.pin_own_share)
    return fine_tune(
        unet,
        scheduler,
        lambda model, rng, alphas: first_frames_batch(
            config, bank, pinned, model, rng, alphas, device, shares=shares, settle=True
        ),
        config.fine_tune_stage("pin"),
        work_dir,
        desc="pin",
        device=device,
    )
