"""Stage 6e: an anchor input, so that a stream can come back to the picture it started from.

With one previous frame as its only memory, the denoiser cannot tell its own drift from the scene: each
continuation frame loses a little of the layout, and the pinning stage's pull towards one picture per
subject is all that stops the loss compounding, so a stream started from any frame ends on that picture
(docs/fidelity.md). Here the UNet gets four more input channels, initialised to zero so that the widened
model starts as the pinned one, carrying an anchor latent: the first frame a stream made under its prompt,
or the frame it was started from; zeros where there is none (a first frame, a frame after a new prompt).

The rows: first frames as in the pinning stage (no previous frame, no anchor, a pinned still as target);
rows after the model's own frames from text alone, with its own first frame as anchor and the nearest
pinned still as target; and the next frame of a clip after a true frame, or after the model's own frames
made from one, with an earlier true frame of the clip as anchor. Rows whose previous frame is another
scene's (the swap that teaches steering) get no anchor. Every row sits at the one-step timestep and every
previous frame comes clean, as streams make them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

from models.text import sentence_embedding

from .config import TrainConfig
from .denoiser import Batch, fine_tune
from .first_frames import StillBank, nearest_stills
from .rollout import one_step_frame
from .world_data import ClipBank


def widen_for_anchor(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """A copy of `unet` whose input also takes an anchor latent (`in_channels = 3 x out_channels`).

    The new channels' weights start at zero, so the copy computes exactly what `unet` does; a UNet that
    already takes an anchor is returned as a plain copy.
    """
    channels = int(unet.config.out_channels)
    config = {**unet.config, "in_channels": 3 * channels}
    wide = UNet2DConditionModel.from_config(config).to(device=unet.device, dtype=unet.dtype)
    state = unet.state_dict()
    weight = state["conv_in.weight"]
    if weight.shape[1] == 2 * channels:
        state["conv_in.weight"] = torch.cat([weight, weight.new_zeros(weight.shape[0], channels, *weight.shape[2:])], 1)
    wide.load_state_dict(state)
    return wide


@torch.no_grad()
def _own_frames(
    unet: UNet2DConditionModel,
    previous: torch.Tensor,
    anchor: torch.Tensor,
    tokens: torch.Tensor,
    pooled: torch.Tensor,
    frames: int,
    rng: np.random.Generator,
    alphas: torch.Tensor,
) -> torch.Tensor:
    """The latent a stream holds after `frames` one-step frames from `previous`, all under `anchor`."""
    for _ in range(frames):
        noise = torch.from_numpy(rng.standard_normal(previous.shape)).float().to(previous.device)
        previous = one_step_frame(unet, torch.cat([previous, anchor], 1), tokens, pooled, noise, alphas)
    return previous


def anchor_batch(
    config: TrainConfig,
    bank: ClipBank,
    pinned: StillBank,
    unet: UNet2DConditionModel,
    rng: np.random.Generator,
    alphas: torch.Tensor,
    device: torch.device | str,
) -> tuple[Batch, torch.Tensor]:
    """One batch of the stage and its timesteps; `batch.context` holds previous frame and anchor, 8 channels."""
    size = config.anchor_batch
    # every previous frame clean and present: the first-frame rows below are the ones without
    batch = Batch(bank, dataclasses.replace(config, context_drop=0.0), rng, size, clean=(1.0, 0.0)).to(device)
    t = torch.full((size,), len(alphas) - 1, dtype=torch.long, device=device)
    anchor = torch.zeros_like(batch.target)
    kind = rng.random(size)
    first_share, own_share = config.anchor_first_share, config.anchor_first_share + config.anchor_own_share
    first = np.flatnonzero(kind < first_share)
    after_own = np.flatnonzero((kind >= first_share) & (kind < own_share))
    rest = np.flatnonzero((kind >= own_share) & ~batch.swapped)
    # half in the canonical words a stream's prompt leads with, half in the clip's own phrasings
    plain = np.flatnonzero(rng.random(size) < config.first_frames_canonical)
    tokens = pinned.canonical[batch.clip[plain]].float().to(device)
    batch.tokens[plain], batch.pooled[plain] = tokens, sentence_embedding(tokens)
    unet.eval()
    if len(first):
        moment = rng.integers(pinned.latents.shape[1], size=len(first))
        batch.target[first] = pinned.latents[batch.clip[first], moment].float().to(device)
        batch.context[first] = 0.0
    if len(after_own):
        tokens, pooled = batch.tokens[after_own], batch.pooled[after_own]
        nothing = torch.zeros_like(batch.target[after_own])
        opening = _own_frames(unet, nothing, nothing, tokens, pooled, 1, rng, alphas)
        frames = int(rng.integers(0, config.rollout_own_frames))
        held = _own_frames(unet, opening, opening, tokens, pooled, frames, rng, alphas)
        batch.context[after_own], anchor[after_own] = held, opening
        batch.target[after_own] = nearest_stills(pinned, batch.clip[after_own], held)
    if len(rest):
        frames = int(rng.integers(1, config.anchor_own_frames + 1))
        mine = (rng.random(len(rest)) < config.anchor_own_rest) & (batch.t[rest] > frames)
        own = rest[mine]
        start = batch.t[rest] - 1 - np.where(mine, frames, 0)  # the true frame each row's stream goes on from
        earlier = (rng.random(len(rest)) * (start + 1)).astype(int)  # uniform in [0, start]
        anchor[rest] = bank.latents[batch.clip[rest], earlier].float().to(device)
        if len(own):
            from_true = bank.latents[batch.clip[own], start[mine]].float().to(device)
            batch.context[own] = _own_frames(
                unet, from_true, anchor[own], batch.tokens[own], batch.pooled[own], frames, rng, alphas
            )
    unet.train()
    batch.context = torch.cat([batch.context, anchor], 1)
    return batch, t


def train_anchor(
    config: TrainConfig,
    bank: ClipBank,
    pinned: StillBank,
    scheduler: DDIMScheduler,
    unet: UNet2DConditionModel,
    work_dir: Path,
    device: torch.device | str = "cpu",
) -> tuple[UNet2DConditionModel, list[float]]:
    """Stage 6e: widen `unet` for an anchor and fine-tune it (resuming from `work_dir`); returns the EMA
    weights and the loss curve."""
    return fine_tune(
        widen_for_anchor(unet),
        scheduler,
        lambda model, rng, alphas: anchor_batch(config, bank, pinned, model, rng, alphas, device),
        config.fine_tune_stage("anchor"),
        work_dir,
        desc="anchor",
        device=device,
    )
