"""Stage 7b: the camera reader (`models.camera`): which way a prompt's camera moves, and how far per second.

Two fits, both on the world's training data: the reader's token head learns camera and pace (or that the
text names neither) from the grounder's training captions, encoded as the denoiser sees them (grounded,
then MiniLM's token states); and each camera x pace value's motion is the pan and zoom that best carry
the first latent of the world's clips of that value onto their later latents.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderTiny
from tqdm import tqdm

from models.camera import CameraReader, move
from models.grounding import SceneGrounder
from models.text import TextEncoder
from models.world import ATTRIBUTES, SceneSpec, render_clip
from models.world.render import FPS

from .checkpoints import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .grounder import training_caption_set
from .world_data import MAX_START_FRAME

CAMERA_RNG_TAG = 41
"""Seeds the stage's own random numbers beside the config's seed."""

PAN_CANDIDATES = torch.linspace(-0.3, 0.3, 121)
"""Frame widths per second a fitted pan is chosen from."""

ZOOM_CANDIDATES = torch.linspace(0.0, 0.3, 61)
"""Scale growth per second a fitted zoom is chosen from."""


@torch.no_grad()
def _conditionings(texts: list[str], grounder: SceneGrounder, text: TextEncoder, chunk: int = 256) -> torch.Tensor:
    """Token states `[N, tokens, dim]` (float16) of `texts` as the denoiser gets them: grounded, then encoded."""
    parts = []
    for start in tqdm(range(0, len(texts), chunk), desc="camera: encode captions", unit="batch"):
        grounded = grounder.expand_all(texts[start : start + chunk], text.sentence_embeddings)
        parts.append(text.encode(grounded).half().cpu())
    return torch.cat(parts)


@torch.no_grad()
def _clip_latents(config: TrainConfig, vae: AutoencoderTiny, scale: float) -> dict[tuple[str, str], torch.Tensor]:
    """Per moving camera x pace, latents `[clips, frames, 4, h, w]` of world clips of random scenes with that
    motion (the first camera, the still one, has none to fit)."""
    rng = np.random.default_rng([config.seed, CAMERA_RNG_TAG])
    out = {}
    pairs = [(camera, pace) for camera in ATTRIBUTES["camera"][1:] for pace in ATTRIBUTES["pace"]]
    for camera, pace in tqdm(pairs, desc="camera: render + encode clips", unit="motion"):
        clips = []
        for _ in range(config.camera_clips):
            spec = dataclasses.replace(SceneSpec.random(rng), camera=camera, pace=pace)
            start = int(rng.integers(MAX_START_FRAME))
            clip = render_clip(spec, int(rng.integers(1 << 30)), config.camera_clip_frames, start_frame=start)
            x = torch.from_numpy(clip).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(vae.device)
            clips.append((vae.encoder(x) * scale).float().cpu())
        out[(camera, pace)] = torch.stack(clips)
    return out


def _carry_error(clips: torch.Tensor, pan: float, zoom: float) -> float:
    """Mean squared error of each clip's first latent moved by `pan` and `zoom` per second onto its later ones."""
    first, error = clips[:, 0], 0.0
    count = len(clips)
    for frame in range(1, clips.shape[1]):
        seconds = frame / FPS
        moved = move(first, torch.full((count,), pan * seconds), torch.full((count,), zoom * seconds))
        error += float(F.mse_loss(moved, clips[:, frame]))
    return error


FIT_PASSES = 3
"""Rounds of fitting the pan with the zoom held, then the zoom with the pan held."""


def fit_motion(clips: torch.Tensor) -> tuple[float, float]:
    """The pan (frame widths per second) and zoom (scale growth per second) that best carry clips
    `[clips, frames, 4, h, w]` of one camera x pace value from their first frame on, each fitted in turn
    with the other held (a pan fitted with no zoom at all would take on some of a zoom's work, and so on)."""
    pan = zoom = 0.0
    for _ in range(FIT_PASSES):
        pan = min(PAN_CANDIDATES.tolist(), key=lambda p: _carry_error(clips, p, zoom))
        zoom = min(ZOOM_CANDIDATES.tolist(), key=lambda z: _carry_error(clips, pan, z))
    return round(pan, 4), round(zoom, 4)


def train_camera_reader(
    config: TrainConfig, grounder: SceneGrounder, vae: AutoencoderTiny, scale: float, work_dir: Path
) -> tuple[CameraReader, dict[str, Any]]:
    """Fit each camera x pace value's motion on world clips and the reader's head on encoded training
    captions (resuming the encoding from `work_dir`); returns the reader and its figures."""
    latents = _clip_latents(config, vae, scale)
    cameras, paces = list(ATTRIBUTES["camera"]), list(ATTRIBUTES["pace"])
    # the still camera does not move; fitted, it would take on a trace of the scenes' own motion
    motion = {(cameras[0], pace): (0.0, 0.0) for pace in paces}
    motion.update({pair: fit_motion(clips) for pair, clips in latents.items()})
    reader = CameraReader(
        cameras=cameras,
        paces=paces,
        pan_per_second=[[motion[(c, p)][0] for p in paces] for c in cameras],
        zoom_per_second=[[motion[(c, p)][1] for p in paces] for c in cameras],
        frames_per_second=FPS,
        max_travel=config.camera_max_travel,
    )
    captions = training_caption_set(config)
    path, recipe = work_dir / "camera.pt", config.camera_recipe()
    saved = load_checkpoint(path, recipe)
    if saved is not None:
        tokens = saved["tokens"]
    else:
        tokens = _conditionings(captions.texts, grounder, TextEncoder(cache_size=0, device="cpu"))
        save_checkpoint(path, {"tokens": tokens}, recipe)
    labels = {attr: captions.labels(attr) for attr in ("camera", "pace")}
    generator = torch.Generator().manual_seed(config.seed * 1000 + CAMERA_RNG_TAG)
    torch.manual_seed(config.seed + CAMERA_RNG_TAG)
    reader.tokens.reset_parameters()
    optimizer = torch.optim.Adam(reader.parameters(), lr=config.camera_lr, weight_decay=config.camera_weight_decay)
    for _ in tqdm(range(config.camera_steps), desc="camera: fit", unit="step"):
        rows = torch.randint(0, len(tokens), (config.camera_batch,), generator=generator)
        camera_logits, pace_logits = reader(tokens[rows].float())
        loss = F.cross_entropy(camera_logits, labels["camera"][rows])
        loss = loss + F.cross_entropy(pace_logits, labels["pace"][rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    reader.eval()
    with torch.no_grad():
        camera_logits, pace_logits = reader(tokens.float())
    accuracy = {}
    for attr, logits in (("camera", camera_logits), ("pace", pace_logits)):
        named = labels[attr] < len(ATTRIBUTES[attr])
        accuracy[attr] = round(float((logits.argmax(-1) == labels[attr])[named].float().mean()), 4)
    figures = {
        "captions": len(tokens),
        "training_accuracy": accuracy,
        "final_loss": round(loss.item(), 4),
        "motion_per_second": {f"{c} {p}": {"pan": m[0], "zoom": m[1]} for (c, p), m in motion.items()},
    }
    return reader, figures
