"""Stage 6f: the copy head, so that a stream keeps the picture it has instead of redrawing it every frame.

A one-step UNet redraws each continuation frame as the average of what its text and context allow: a
little of the picture is lost every frame, and the loss compounds (docs/fidelity.md). Here the UNet gets
`models.copying.COPY_OUTPUTS` more output channels: per latent cell, weights that mix its drawing with the
stream's anchor and with the previous frame moved by a 3x3 kernel (a camera moves the frame by a fraction
of a cell per frame). The new channels start so that the mix is nearly all drawing, and the kernel nearly
still.

The rows: most go on from a true frame of a long clip through 0 to `copy_own_frames` of the model's own
frames (made without gradients, through the copy head), with that true frame as anchor and the clip's
true frame after them as target, as DIAMOND's and Self Forcing's rollouts train on the model's own
context; the rest are drawn as the anchor stage draws its rows (first frames, frames after a new scene's
picture), so that what the UNet draws without an anchor, which steering and first frames use, stays as
it was. The loss is on each row's clean latent, mixed where the row has an anchor.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DConditionModel

from models.copying import COPY_OUTPUTS, KERNEL, SOURCES
from models.text import sentence_embedding

from .anchor import anchor_batch
from .config import TrainConfig
from .denoiser import Batch, fine_tune
from .first_frames import StillBank
from .rollout import one_step_clean, one_step_frame
from .world_data import ClipBank

HEAD_START = (0.0, -3.0, -3.0)
"""Starting mixing logits (drawing, anchor, moved previous frame): about 91% drawing."""

STILL_KERNEL = 5.0
"""Starting logit of the kernel's centre (the others 0): 95% of a cell stays where it is."""


def widen_for_copy_head(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """A copy of `unet` (which takes an anchor) with a copy head: its drawing as before, and new output
    channels that start almost all on the drawing with a still kernel; a UNet that has one is a plain copy."""
    channels = int(unet.config.in_channels) // 3
    config = {**unet.config, "out_channels": channels + COPY_OUTPUTS}
    wide = UNet2DConditionModel.from_config(config).to(device=unet.device, dtype=unet.dtype)
    state = unet.state_dict()
    weight, bias = state["conv_out.weight"], state["conv_out.bias"]
    if weight.shape[0] == channels:
        extra = COPY_OUTPUTS
        state["conv_out.weight"] = torch.cat([weight, weight.new_zeros(extra, *weight.shape[1:])])
        head = bias.new_zeros(extra)
        head[:SOURCES] = torch.tensor(HEAD_START, dtype=bias.dtype)
        head[SOURCES + (KERNEL * KERNEL) // 2] = STILL_KERNEL
        state["conv_out.bias"] = torch.cat([bias, head])
    wide.load_state_dict(state)
    return wide


def copy_batch(
    config: TrainConfig,
    long_clips: ClipBank,
    bank: ClipBank,
    pinned: StillBank,
    unet: UNet2DConditionModel,
    rng: np.random.Generator,
    alphas: torch.Tensor,
    device: torch.device | str,
) -> tuple[Batch, torch.Tensor]:
    """One batch of the stage: the anchor stage's rows, then the rows after own frames of a long clip."""
    keep = max(1, round(config.copy_batch * config.copy_keep_share))
    kept, t = anchor_batch(dataclasses.replace(config, anchor_batch=keep), bank, pinned, unet, rng, alphas, device)
    size = config.copy_batch - keep
    frames = int(rng.integers(0, config.copy_own_frames + 1))
    clips, length = long_clips.latents.shape[:2]
    clip = rng.integers(clips, size=size)
    start = rng.integers(0, length - 1 - frames, size=size)
    anchor = long_clips.latents[clip, start].float().to(device)
    target = long_clips.latents[clip, start + frames + 1].float().to(device)
    # the last caption of each long clip is its canonical one, which names the camera's motion
    captions = long_clips.tokens.shape[1]
    caption = np.where(rng.random(size) < config.copy_canonical, captions - 1, rng.integers(captions - 1, size=size))
    tokens = long_clips.tokens[clip, caption].float().to(device)
    pooled = sentence_embedding(tokens)
    previous = anchor
    unet.eval()
    for _ in range(frames):
        noise = torch.from_numpy(rng.standard_normal(previous.shape)).float().to(device)
        previous = one_step_frame(unet, torch.cat([previous, anchor], 1), tokens, pooled, noise, alphas)
    unet.train()
    kept.target = torch.cat([kept.target, target])
    kept.context = torch.cat([kept.context, torch.cat([previous, anchor], 1)])
    kept.tokens = torch.cat([kept.tokens, tokens])
    kept.pooled = torch.cat([kept.pooled, pooled])
    return kept, torch.cat([t, t.new_full((size,), len(alphas) - 1)])


def clean_loss(
    unet: UNet2DConditionModel, batch: Batch, t: torch.Tensor, noise: torch.Tensor, alphas: torch.Tensor
) -> torch.Tensor:
    """Squared error of each row's one-step clean latent (mixed by the copy head where it has an anchor)."""
    clean = one_step_clean(unet, noise, batch.context, batch.tokens, batch.pooled, alphas)
    return F.mse_loss(clean, batch.target)


def _groups(config: TrainConfig) -> Any:
    def groups(unet: UNet2DConditionModel) -> list[dict[str, Any]]:
        head = list(unet.conv_out.parameters())
        body = [p for name, p in unet.named_parameters() if not name.startswith("conv_out.")]
        return [{"params": body, "lr": config.copy_lr}, {"params": head, "lr": config.copy_head_lr}]

    return groups


def train_copy_head(
    config: TrainConfig,
    long_clips: ClipBank,
    bank: ClipBank,
    pinned: StillBank,
    scheduler: DDIMScheduler,
    unet: UNet2DConditionModel,
    work_dir: Path,
    device: torch.device | str = "cpu",
) -> tuple[UNet2DConditionModel, list[float]]:
    """Stage 6f: give `unet` a copy head and fine-tune it (resuming from `work_dir`); returns the EMA weights
    and the loss curve."""
    return fine_tune(
        widen_for_copy_head(unet),
        scheduler,
        lambda model, rng, alphas: copy_batch(config, long_clips, bank, pinned, model, rng, alphas, device),
        config.fine_tune_stage("copy"),
        work_dir,
        desc="copy head",
        device=device,
        loss_fn=clean_loss,
        param_groups=_groups(config),
    )
