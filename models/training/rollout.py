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

import copy
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from tqdm import tqdm

from models.pipeline import LATENT_CLAMP

from .checkpoints import load_checkpoint, restore_training_state, save_checkpoint, training_state
from .config import TrainConfig
from .denoiser import Batch, _timesteps, descend, v_prediction_loss
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
    last = len(alphas) - 1
    t = torch.full((len(context),), last, dtype=torch.long, device=context.device)
    velocity = unet(torch.cat([noise, context], dim=1), t, encoder_hidden_states=tokens, class_labels=pooled).sample
    a, s = float(alphas[last].sqrt()), float((1 - alphas[last]).sqrt())
    return (a * noise - s * velocity).clamp(-LATENT_CLAMP, LATENT_CLAMP)


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


def train_rollout(
    config: TrainConfig,
    bank: ClipBank,
    scheduler: DDIMScheduler,
    unet: UNet2DConditionModel,
    work_dir: Path,
    device: torch.device | str = "cpu",
) -> tuple[UNet2DConditionModel, list[float]]:
    """Fine-tune `unet` (resuming from `work_dir`); returns the EMA weights and the loss curve."""
    path = work_dir / "rollout.pt"
    unet = copy.deepcopy(unet).to(device).float().requires_grad_(True).train()
    ema = copy.deepcopy(unet).requires_grad_(False)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.rollout_lr, weight_decay=1e-2)
    rng = np.random.default_rng([config.seed, 13])
    parts = {"model": unet, "ema": ema, "optimizer": optimizer}
    step, losses = 0, []
    state = load_checkpoint(path, config.rollout_recipe())
    if state is not None:
        step, losses = restore_training_state(state, parts, rng), state["losses"]
    alphas = scheduler.alphas_cumprod.float().to(device)
    train_steps = int(scheduler.config.num_train_timesteps)
    size = config.rollout_batch
    with tqdm(total=config.rollout_steps, initial=step, desc="rollout fine-tune", unit="step") as bar:
        while step < config.rollout_steps:
            batch = Batch(bank, config, rng, size, clean=(config.rollout_clean_share, config.rollout_context_noise))
            batch = batch.to(device)
            frames = int(rng.integers(1, config.rollout_own_frames + 1))
            rows = np.flatnonzero((rng.random(size) < config.rollout_own_share) & (batch.t > frames))
            if len(rows):
                give_own_context(unet, batch, bank, rows, frames, config.rollout_context_noise, rng, alphas)
            t = _timesteps(rng, size, train_steps, VISITED_TIMESTEPS).to(device)
            noise = torch.from_numpy(rng.standard_normal(batch.target.shape)).float().to(device)
            loss = v_prediction_loss(unet, batch, t, noise, alphas)
            descend(unet, optimizer, loss, ema, config.ema_decay)
            step += 1
            losses.append(round(loss.item(), 5))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            if step % config.checkpoint_every == 0 or step == config.rollout_steps:
                save_checkpoint(path, training_state(parts, rng, step, losses=losses), config.rollout_recipe())
    return ema.eval(), losses
