"""Stage 5: rollout fine-tuning, so that streams hold a crisp picture instead of dissolving into streaks.

Three things kept the earlier denoiser from holding its picture (the fidelity section of `pixelcast eval
model` measures them):

1. Every row of its training batches had noise of up to 0.3 on the previous frame, so it learned to
   hedge against a previous frame it could not trust and blurred what it should have kept. Here half
   the rows get no more noise than a stream adds (GameNGen's and DIAMOND's context noise is small at
   inference and known to the model; this one tells it apart by how the previous frame looks).
2. It was fitted to one sampling step, which returns the average of what the text allows; a stream's
   first frame, with no previous frame, needs a few steps to pick one picture. Here half the rows sit
   on the timesteps 1- to 4-step sampling visits.
3. It only ever saw true previous frames, never its own (exposure bias). As DIAMOND trains on CS:GO,
   a quarter of the rows get as previous frame the model's own, made without gradients in 1-4
   one-step frames from a true frame, and the loss is on the true next frame: the model learns to come
   back from where its own rollouts drift.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

from models.copying import mix
from models.pipeline import LATENT_CLAMP

from .config import TrainConfig
from .denoiser import Batch, _timesteps, fine_tune
from .world_data import ClipBank

VISITED_TIMESTEPS = (999, 749, 666, 499, 333, 249)
"""The timesteps trailing DDIM visits in 1 to 4 steps."""


@torch.no_grad()
def one_step_frame(
    unet: UNet2DConditionModel,
    context: torch.Tensor,
    tokens: torch.Tensor,
    pooled: torch.Tensor,
    noise: torch.Tensor,
    alphas: torch.Tensor,
) -> torch.Tensor:
    """The latent a stream makes in one step from pure `noise` after `context`, as the engine samples it."""
    return one_step_clean(unet, noise, context, tokens, pooled, alphas).clamp(-LATENT_CLAMP, LATENT_CLAMP)


def one_step_clean(
    unet: UNet2DConditionModel,
    noise: torch.Tensor,
    context: torch.Tensor,
    tokens: torch.Tensor,
    pooled: torch.Tensor,
    alphas: torch.Tensor,
) -> torch.Tensor:
    """The clean latent one step from pure `noise` after `context` predicts, before clamping: with a copy head,
    its mix of the UNet's drawing with the anchor and the moved previous frame wherever the context has an
    anchor (an all-zero anchor is none, as the engine gives it)."""
    last = len(alphas) - 1
    t = torch.full((len(context),), last, dtype=torch.long, device=context.device)
    velocity = unet(torch.cat([noise, context], dim=1), t, encoder_hidden_states=tokens, class_labels=pooled).sample
    a, s = float(alphas[last].sqrt()), float((1 - alphas[last]).sqrt())
    channels = noise.shape[1]
    clean = a * noise - s * velocity[:, :channels]
    if velocity.shape[1] == channels:
        return clean
    previous, anchor = context[:, :channels], context[:, channels : 2 * channels]
    anchored = anchor.flatten(1).abs().amax(1) > 0
    return mix(clean, velocity[:, channels:], previous, anchor, anchored)


def give_own_context(
    unet: UNet2DConditionModel,
    batch: Batch,
    bank: ClipBank,
    rows: np.ndarray,
    frames: int,
    noise_std: float,
    rng: np.random.Generator,
    alphas: torch.Tensor,
) -> None:
    """Give `rows` of `batch` the model's own frame as previous frame: from the true frame `frames + 1` before
    the target, the model makes `frames` frames in turn with `noise_std` on each previous frame, as a stream does."""
    device = batch.target.device

    def draw(like: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(rng.standard_normal(like.shape)).float().to(device)

    context = bank.latents[batch.clip[rows], batch.t[rows] - 1 - frames].float().to(device)
    tokens, pooled = batch.tokens[rows], batch.pooled[rows]
    unet.eval()
    for _ in range(frames):
        context = one_step_frame(unet, context + noise_std * draw(context), tokens, pooled, draw(context), alphas)
    unet.train()
    batch.context[rows] = context + noise_std * draw(context)


def _rollout_batch(
    config: TrainConfig,
    bank: ClipBank,
    unet: UNet2DConditionModel,
    rng: np.random.Generator,
    alphas: torch.Tensor,
    device: torch.device | str,
) -> tuple[Batch, torch.Tensor]:
    """One batch of the stage and its timesteps: clean previous frames for some rows, own frames for others."""
    size = config.rollout_batch
    batch = Batch(bank, config, rng, size, clean=(config.rollout_clean_share, config.rollout_context_noise))
    batch = batch.to(device)
    frames = int(rng.integers(1, config.rollout_own_frames + 1))
    rows = np.flatnonzero((rng.random(size) < config.rollout_own_share) & (batch.t > frames))
    if len(rows):
        give_own_context(unet, batch, bank, rows, frames, config.rollout_context_noise, rng, alphas)
    return batch, _timesteps(rng, size, len(alphas), VISITED_TIMESTEPS).to(device)


def train_rollout(
    config: TrainConfig,
    bank: ClipBank,
    scheduler: DDIMScheduler,
    unet: UNet2DConditionModel,
    work_dir: Path,
    device: torch.device | str = "cpu",
) -> tuple[UNet2DConditionModel, list[float]]:
    """Fine-tune `unet` (resuming from `work_dir`); returns the EMA weights and the loss curve."""
    return fine_tune(
        unet,
        scheduler,
        lambda model, rng, alphas: _rollout_batch(config, bank, model, rng, alphas, device),
        config.fine_tune_stage("rollout"),
        work_dir,
        desc="rollout fine-tune",
        device=device,
    )
