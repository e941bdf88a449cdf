"""Stage 6: first frames that look like the scene asked for, and streams that keep them.

A stream starts from text alone: its first frame has no previous frame, and every later frame carries
it on. The earlier stages saw each exact scene (subject, palette, weather, pace, camera) about twice,
in ever new phrasings, and mostly with a previous frame to copy, so from text alone the model drew a
haze shrunk towards the average of all scenes, and the streams held it.

This stage fine-tunes the denoiser on a still bank: each bank clip's scene rendered again at other
layouts and moments. Part of each batch is first frames (no previous frame, a still as target, half
at the timestep one-step sampling visits and half anywhere), part follows the model's own first
frames (made without gradients from text alone, as a stream makes them, with a still of the scene as
target), and the rest is the rollout stage's recipe, so that a clean previous frame is still kept.
Half of the first-frame rows read the scene's canonical caption, the words a stream's prompt leads
with (the planner's scene caption, the grounder's canonical words), the rest the clip's phrasings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderTiny, DDIMScheduler, UNet2DConditionModel
from tqdm import tqdm

from models.text import TextEncoder, sentence_embedding
from models.world import describe

from .autoencoder import to_unit_range
from .config import TrainConfig
from .denoiser import Batch, _timesteps, fine_tune
from .rollout import VISITED_TIMESTEPS, give_own_context, one_step_frame
from .world_data import ClipBank, render_stills

ONE_STEP = (999,)
"""The timestep a one-step first frame is sampled at."""


@dataclass
class StillBank:
    """Each bank clip's scene at other layouts and moments, and the scene's canonical caption."""

    latents: torch.Tensor  # [clips, stills, 4, 16, 16] float16, scaled as the clip bank's
    canonical: torch.Tensor  # [clips, tokens, 384] float16 MiniLM token states of `describe(spec)`


@torch.no_grad()
def build_still_bank(
    bank: ClipBank, per_clip: int, seed: int, vae: AutoencoderTiny, scale: float, text: TextEncoder
) -> StillBank:
    """Render and encode `per_clip` stills of each bank clip's scene at random layouts and moments, and embed
    the scene's canonical caption (the words a stream's prompt leads with); the clip's captions fit them too."""
    rng = np.random.default_rng([seed, 17])
    latents = torch.empty(len(bank.specs), per_clip, *bank.latents.shape[2:], dtype=torch.float16)
    for index, spec in enumerate(tqdm(bank.specs, desc="render + encode stills", unit="clip")):
        frames = render_stills(spec, per_clip, rng)
        x = to_unit_range(frames).to(vae.device)
        latents[index] = (vae.encoder(x) * scale).half().cpu()
    captions = sorted({describe(spec) for spec in bank.specs})
    states = dict(zip(captions, text.encode(captions).half().cpu()))
    canonical = torch.stack([states[describe(spec)] for spec in bank.specs])
    return StillBank(latents=latents, canonical=canonical)


@torch.no_grad()
def own_first_frames(
    unet: UNet2DConditionModel,
    batch: Batch,
    rows: np.ndarray,
    frames: int,
    rng: np.random.Generator,
    alphas: torch.Tensor,
) -> torch.Tensor:
    """The latent a stream of each row's text holds after `frames` one-step frames from text alone."""
    device = batch.target.device
    context = torch.zeros_like(batch.target[rows])
    tokens, pooled = batch.tokens[rows], batch.pooled[rows]
    unet.eval()
    for _ in range(frames):
        noise = torch.from_numpy(rng.standard_normal(context.shape)).float().to(device)
        context = one_step_frame(unet, context, tokens, pooled, noise, alphas)
    unet.train()
    return context


def nearest_stills(stills: StillBank, clips: np.ndarray, latents: torch.Tensor) -> torch.Tensor:
    """For each latent, the still of its clip's scene nearest to it (squared latent distance)."""
    candidates = stills.latents[clips].float().to(latents.device)  # [rows, stills, 4, h, w]
    distances = (candidates - latents[:, None]).pow(2).flatten(2).sum(-1)
    return candidates[torch.arange(len(clips)), distances.argmin(1)]


def first_frames_batch(
    config: TrainConfig,
    bank: ClipBank,
    stills: StillBank,
    unet: UNet2DConditionModel,
    rng: np.random.Generator,
    alphas: torch.Tensor,
    device: torch.device | str,
    *,
    shares: tuple[float, float] | None = None,
    settle: bool = False,
) -> tuple[Batch, torch.Tensor]:
    """One batch of the stage and its timesteps: first frames, frames after the model's own first frames, and
    the rollout stage's rows.

    `shares`: the first-frame and after-own-frames shares of the rows (default the stage's). `settle`: rows
    after the model's own frames aim at the still nearest to those frames rather than at any still of the
    scene, so that a stream's frames settle on one of the pictures its text allows instead of their average.
    """
    first_share, own_share = shares or (config.first_frames_share, config.first_frames_own_share)
    size = config.first_frames_batch
    batch = Batch(bank, config, rng, size, clean=(config.rollout_clean_share, config.rollout_context_noise))
    batch = batch.to(device)
    train_steps = len(alphas)
    t = _timesteps(rng, size, train_steps, VISITED_TIMESTEPS).to(device)
    kind = rng.random(size)
    first = np.flatnonzero(kind < first_share)
    after_own = np.flatnonzero((kind >= first_share) & (kind < first_share + own_share))
    rest = np.flatnonzero(kind >= first_share + own_share)
    for rows in (first, after_own):
        if len(rows):
            picked = rng.integers(stills.latents.shape[1], size=len(rows))
            batch.target[rows] = stills.latents[batch.clip[rows], picked].float().to(device)
            # half in the canonical words a stream's prompt leads with, half in the clip's own phrasings
            plain = rows[rng.random(len(rows)) < config.first_frames_canonical]
            tokens = stills.canonical[batch.clip[plain]].float().to(device)
            batch.tokens[plain], batch.pooled[plain] = tokens, sentence_embedding(tokens)
    if len(first):
        batch.context[first] = 0.0
        t[first] = _timesteps(rng, len(first), train_steps, ONE_STEP).to(device)
    if len(after_own):
        frames = int(rng.integers(1, config.rollout_own_frames + 1))
        batch.context[after_own] = own_first_frames(unet, batch, after_own, frames, rng, alphas)
        if settle:
            batch.target[after_own] = nearest_stills(stills, batch.clip[after_own], batch.context[after_own])
        t[after_own] = _timesteps(rng, len(after_own), train_steps, ONE_STEP).to(device)
    frames = int(rng.integers(1, config.rollout_own_frames + 1))
    own = rest[(rng.random(len(rest)) < config.rollout_own_share) & (batch.t[rest] > frames)]
    if len(own):
        give_own_context(unet, batch, bank, own, frames, config.rollout_context_noise, rng, alphas)
    return batch, t


def train_first_frames(
    config: TrainConfig,
    bank: ClipBank,
    stills: StillBank,
    scheduler: DDIMScheduler,
    unet: UNet2DConditionModel,
    work_dir: Path,
    device: torch.device | str = "cpu",
) -> tuple[UNet2DConditionModel, list[float]]:
    """Fine-tune `unet` (resuming from `work_dir`); returns the EMA weights and the loss curve."""
    return fine_tune(
        unet,
        scheduler,
        lambda model, rng, alphas: first_frames_batch(config, bank, stills, model, rng, alphas, device),
        config.fine_tune_stage("first_frames"),
        work_dir,
        desc="first frames",
        device=device,
    )


def train_settling(
    config: TrainConfig,
    bank: ClipBank,
    stills: StillBank,
    scheduler: DDIMScheduler,
    unet: UNet2DConditionModel,
    work_dir: Path,
    device: torch.device | str = "cpu",
) -> tuple[UNet2DConditionModel, list[float]]:
    """Stage 6b: frames after the model's own first frames aim at the nearest still of the scene (resuming from
    `work_dir`); returns the EMA weights and the loss curve."""
    shares = (config.settle_first_share, config.settle_own_share)
    return fine_tune(
        unet,
        scheduler,
        lambda model, rng, alphas: first_frames_batch(
            config, bank, stills, model, rng, alphas, device, shares=shares, settle=True
        ),
        config.fine_tune_stage("settle"),
        work_dir,
        desc="settle",
        device=device,
    )
