"""Stage 2: the video denoiser, trained on consecutive latent frames of the clip bank."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DConditionModel
from tqdm import tqdm

from models.text import sentence_embedding

from .architecture import make_video_unet
from .checkpoints import load_checkpoint, restore_training_state, save_checkpoint, training_state
from .config import FineTuneStage, TrainConfig
from .world_data import ClipBank

# The timesteps 1- and 2-step trailing DDIM sampling actually visits get extra training weight.
SAMPLER_TIMESTEPS = (999, 499)
SAMPLER_SHARE = 0.5


class Batch:
    """One training batch drawn from the clip bank."""

    def __init__(
        self,
        bank: ClipBank,
        config: TrainConfig,
        rng: np.random.Generator,
        size: int,
        *,
        clean: tuple[float, float] | None = None,
    ) -> None:
        """`clean`: (share, noise): that share of rows gets at most that noise on its previous frame, the rest
        up to `config.context_noise_max` (default: every row up to the maximum)."""
        clips, frames = bank.latents.shape[:2]
        clip = rng.integers(clips, size=size)
        t = rng.integers(1, frames, size=size)
        self.target = bank.latents[clip, t].float()
        context = bank.latents[clip, t - 1].float()
        # 1. swapped context: a frame of another scene, so the text learns to win over the picture (steering)
        swap = rng.random(size) < config.context_swap
        other = rng.integers(clips, size=size)
        context[swap] = bank.latents[other[swap], rng.integers(frames, size=int(swap.sum()))].float()
        # 2. dropped context: the first frame of a stream has none
        drop = rng.random(size) < config.context_drop
        context[drop] = 0.0
        # 3. noisy context, so small errors of its own earlier frames do not compound over a rollout
        sigma = rng.uniform(0, config.context_noise_max, size=size)
        if clean is not None:
            # a previous frame that comes clean is to be kept, not hedged against as if it might be noisy
            share, most = clean
            sigma = np.where(rng.random(size) < share, rng.uniform(0, most, size=size), sigma)
        sigma = torch.from_numpy(sigma).float().view(-1, 1, 1, 1)
        noise = torch.from_numpy(rng.standard_normal(context.shape)).float()
        self.context = context + sigma * noise
        self.clip, self.t, self.swapped = clip, t, swap
        captions = bank.tokens.shape[1]
        caption = rng.integers(captions, size=size)
        tokens = bank.tokens[clip, caption].float()
        # 4. the sentence embedding is a random blend of two captions of the same clip plus a little
        #    noise: the class embedding learns a region around each scene, not a point per phrasing
        pooled = sentence_embedding(tokens)
        if config.text_mix:
            other_caption = sentence_embedding(bank.tokens[clip, rng.integers(captions, size=size)].float())
            weight = torch.from_numpy(rng.uniform(0.0, 1.0, size=size)).float().view(-1, 1)
            pooled = pooled + weight * (other_caption - pooled)
        text_noise = torch.from_numpy(rng.standard_normal(pooled.shape)).float()
        self.pooled = F.normalize(pooled + config.text_noise * text_noise, dim=-1)
        # 5. dropped token states: the sentence embedding alone must carry the scene (it generalizes
        #    to new wordings far better than individual tokens do)
        tokens[rng.random(size) < config.text_drop] = 0.0
        self.tokens = tokens

    def to(self, device: torch.device | str) -> Batch:
        """This batch with every tensor on `device` (the draws themselves always happen on the CPU)."""
        for name in ("target", "context", "pooled", "tokens"):
            setattr(self, name, getattr(self, name).to(device))
        return self


def _timesteps(
    rng: np.random.Generator, size: int, train_steps: int, visited: tuple[int, ...] = SAMPLER_TIMESTEPS
) -> torch.Tensor:
    """Half the rows at the timesteps few-step sampling visits (`visited`), half anywhere."""
    uniform = rng.integers(train_steps, size=size)
    sampler = np.asarray(visited)[rng.integers(len(visited), size=size)]
    return torch.from_numpy(np.where(rng.random(size) < SAMPLER_SHARE, sampler, uniform)).long()


def _learning_rate(config: TrainConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.unet_lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.unet_steps - config.warmup_steps)
    return config.unet_lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def v_prediction_loss(
    unet: UNet2DConditionModel, batch: Batch, t: torch.Tensor, noise: torch.Tensor, alphas: torch.Tensor
) -> torch.Tensor:
    """Squared error of the UNet's velocity for `batch.target` noised to timesteps `t` with `noise`."""
    a = alphas[t].sqrt().view(-1, 1, 1, 1)
    s = (1 - alphas[t]).sqrt().view(-1, 1, 1, 1)
    noisy = a * batch.target + s * noise
    velocity = a * noise - s * batch.target
    prediction = unet(
        torch.cat([noisy, batch.context], dim=1), t, encoder_hidden_states=batch.tokens, class_labels=batch.pooled
    ).sample
    return F.mse_loss(prediction, velocity)


def descend(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, ema: torch.nn.Module, decay: float
) -> None:
    """One optimizer step on `loss` (gradient norm clipped to 1), then the EMA weights follow by `1 - decay`."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    update_ema(ema, model, decay)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Move each EMA weight `1 - decay` of the way to the model's (0 copies the model)."""
    for ema_param, param in zip(ema.parameters(), model.parameters()):
        ema_param.lerp_(param, 1 - decay)


def train_denoiser(
    config: TrainConfig, bank: ClipBank, scheduler: DDIMScheduler, work_dir: Path, device: torch.device | str = "cpu"
) -> tuple[UNet2DConditionModel, list[float]]:
    """Train (or resume) the UNet on `device` with v-prediction; returns the EMA weights and the loss curve.

    Every random draw of the data comes from numpy on the CPU, so each device sees the same batches.
    """
    path = work_dir / "denoiser.pt"
    torch.manual_seed(config.seed + 1)
    unet = make_video_unet().to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.unet_lr, weight_decay=1e-2)
    rng = np.random.default_rng([config.seed, 4])
    step, losses = 0, []
    parts = {"model": unet, "ema": ema, "optimizer": optimizer}
    state = load_checkpoint(path, config.denoiser_recipe())
    if state is not None:
        step, losses = restore_training_state(state, parts, rng), state["losses"]
    alphas = scheduler.alphas_cumprod.float().to(device)
    train_steps = int(scheduler.config.num_train_timesteps)
    unet.train()
    with tqdm(total=config.unet_steps, initial=step, desc="denoiser", unit="step") as bar:
        while step < config.unet_steps:
            batch = Batch(bank, config, rng, config.unet_batch).to(device)
            t = _timesteps(rng, config.unet_batch, train_steps).to(device)
            noise = torch.from_numpy(rng.standard_normal(batch.target.shape)).float().to(device)
            loss = v_prediction_loss(unet, batch, t, noise, alphas)
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(config, step)
            descend(unet, optimizer, loss, ema, config.ema_decay if step > config.warmup_steps else 0.0)
            step += 1
            losses.append(round(loss.item(), 5))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            if step % config.checkpoint_every == 0 or step == config.unet_steps:
                save_checkpoint(path, training_state(parts, rng, step, losses=losses), config.denoiser_recipe())
    return ema.eval(), losses


BatchMaker = Callable[[UNet2DConditionModel, np.random.Generator, torch.Tensor], tuple[Batch, torch.Tensor]]
"""(model being trained, the stage's generator, alphas) -> a batch on the device and its timesteps."""

LossFn = Callable[[UNet2DConditionModel, Batch, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(model, batch, timesteps, noise, alphas) -> the loss to descend on, as `v_prediction_loss`."""

ParamGroups = Callable[[UNet2DConditionModel], list[dict[str, Any]]]
"""The model being trained -> the optimizer's parameter groups (a group without "lr" takes the stage's)."""


def fine_tune(
    unet: UNet2DConditionModel,
    scheduler: DDIMScheduler,
    next_batch: BatchMaker,
    stage: FineTuneStage,
    work_dir: Path,
    *,
    desc: str,
    device: torch.device | str = "cpu",
    loss_fn: LossFn = v_prediction_loss,
    param_groups: ParamGroups | None = None,
) -> tuple[UNet2DConditionModel, list[float]]:
    """Fine-tune a copy of `unet` on `next_batch`'s batches with `loss_fn` (v-prediction unless given) at the
    `stage`'s constant learning rate (or the `param_groups`' own), checkpointing to `work_dir / <stage name>.pt`
    under its recipe (and resuming from it); returns the EMA weights and the loss curve."""
    path, rng = work_dir / f"{stage.name}.pt", np.random.default_rng(stage.rng_seed)
    unet = copy.deepcopy(unet).to(device).float().requires_grad_(True).train()
    ema = copy.deepcopy(unet).requires_grad_(False)
    groups = param_groups(unet) if param_groups is not None else [{"params": list(unet.parameters())}]
    optimizer = torch.optim.AdamW(groups, lr=stage.lr, weight_decay=1e-2)
    parts = {"model": unet, "ema": ema, "optimizer": optimizer}
    step, losses = 0, []
    state = load_checkpoint(path, stage.recipe)
    if state is not None:
        step, losses = restore_training_state(state, parts, rng), state["losses"]
    alphas = scheduler.alphas_cumprod.float().to(device)
    with tqdm(total=stage.steps, initial=step, desc=desc, unit="step") as bar:
        while step < stage.steps:
            batch, t = next_batch(unet, rng, alphas)
            noise = torch.from_numpy(rng.standard_normal(batch.target.shape)).float().to(device)
            loss = loss_fn(unet, batch, t, noise, alphas)
            descend(unet, optimizer, loss, ema, stage.ema_decay)
            step += 1
            losses.append(round(loss.item(), 5))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            if step % stage.checkpoint_every == 0 or step == stage.steps:
                save_checkpoint(path, training_state(parts, rng, step, losses=losses), stage.recipe)
    return ema.eval(), losses
