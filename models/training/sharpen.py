"""Stage 4: adversarial sharpening of the denoiser's one-step frames.

A denoiser trained on mean squared error alone predicts, in one step from pure noise, the average of
every frame its text and previous frame allow: soft colour fields instead of trees, towers and stars.
A stream's first frame is such an average, and every later frame carries it on, since each mostly
moves its previous frame along. This stage keeps that loss (so the model stays a denoiser) and adds a
small critic on latents that tells real frames of a text from the frames a stream starts with; the
denoiser learns to make frames it cannot tell apart. The idea follows adversarial diffusion
distillation (the recipe behind SD-turbo), with the world's own frames as the real side.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DConditionModel
from torch import nn
from tqdm import tqdm

from .architecture import LATENT_CHANNELS, TEXT_DIM
from .checkpoints import load_checkpoint, restore_training_state, save_checkpoint, training_state
from .config import TrainConfig
from .denoiser import Batch, update_ema, v_prediction_loss
from .rollout import one_step_clean
from .world_data import ClipBank

ANCHOR_POOL = 4
"""The sharpened frame's latent, averaged over 4x4 cells (32x32 pixels), stays the trained denoiser's."""


class LatentCritic(nn.Module):
    """Patch discriminator on a latent frame with a projection of the text embedding.

    The projection term (features . W text) makes "real" mean "real for this text", so the denoiser
    cannot please it with a sharp frame of the wrong scene. It does not see the previous frame: in a
    stream that is the model's own (blurred) frame, which would give fakes away without telling the
    denoiser how to make a better one.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(LATENT_CHANNELS, width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),  # 8x8
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 2 * width, 4, stride=2, padding=1),  # 4x4
            nn.LeakyReLU(0.2),
        )
        self.patch = nn.Conv2d(2 * width, 1, 1)
        self.text = nn.Linear(TEXT_DIM, 2 * width)

    def forward(self, latent: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """One logit per 4x4 patch and sample, `[B, 16]`; higher means more like a real frame of the text."""
        h = self.body(latent)
        projection = (h * self.text(pooled)[:, :, None, None]).sum(dim=1) / h.shape[1] ** 0.5
        return (self.patch(h)[:, 0] + projection).flatten(1)


def critic_loss(
    critic: LatentCritic, real: torch.Tensor, fake: torch.Tensor, pooled: torch.Tensor, r1: float
) -> torch.Tensor:
    """Non-saturating logistic loss plus an R1 penalty (the gradient norm on real frames), which keeps
    the critic smooth where the real frames are and the game from oscillating.

    Half of the "not real" side is real frames under another row's text, so the critic must read the
    text (a sharp forest is no answer to "an ocean"), as in matching-aware text-to-image GANs.
    """
    real = real.detach().requires_grad_(True)
    real_logits = critic(real, pooled)
    (gradient,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    penalty = gradient.pow(2).flatten(1).sum(1).mean()
    fake_logits = critic(fake.detach(), pooled)
    mismatched_logits = critic(real.detach(), pooled.roll(1, dims=0))
    not_real = 0.5 * (F.softplus(fake_logits).mean() + F.softplus(mismatched_logits).mean())
    return F.softplus(-real_logits).mean() + not_real + 0.5 * r1 * penalty


@torch.no_grad()
def stream_contexts(
    unet: UNet2DConditionModel, batch: Batch, config: TrainConfig, rng: np.random.Generator, alphas: torch.Tensor
) -> torch.Tensor:
    """Previous frames as a stream has them: none (its first frame), or for a share of rows the
    denoiser's own first frame for the same text, with the engine's context noise.

    With real previous frames the one-step frame is already sharp (it is mostly the previous frame
    moved on), so the critic could not tell it from a real one; a stream's trouble is its start.
    """
    size, device = batch.target.shape[0], batch.target.device
    contexts = torch.zeros_like(batch.target)
    rows = torch.from_numpy(np.flatnonzero(rng.random(size) < config.sharpen_own_context)).to(device)
    noise, jitter = (torch.from_numpy(rng.standard_normal(batch.target.shape)).float().to(device) for _ in range(2))
    if len(rows):
        own = one_step_clean(unet, noise[rows], contexts[rows], batch.tokens[rows], batch.pooled[rows], alphas)
        contexts[rows] = own + config.context_noise_inference * jitter[rows]
    return contexts


def train_sharpener(
    config: TrainConfig,
    bank: ClipBank,
    scheduler: DDIMScheduler,
    denoiser: UNet2DConditionModel,
    work_dir: Path,
    device: torch.device | str = "cpu",
) -> tuple[UNet2DConditionModel, list[dict[str, float]]]:
    """Fine-tune `denoiser` against a `LatentCritic` (or resume); returns the EMA weights and a loss log.

    Like the denoiser stage, every random draw of the data comes from numpy on the CPU.
    """
    path = work_dir / "sharpen.pt"
    torch.manual_seed(config.seed + 5)
    rng = np.random.default_rng([config.seed, 5])
    unet = copy.deepcopy(denoiser).to(device).train().requires_grad_(True)
    ema = copy.deepcopy(denoiser).to(device).eval().requires_grad_(False)
    teacher = copy.deepcopy(denoiser).to(device).eval().requires_grad_(False)
    critic = LatentCritic().to(device)
    g_opt = torch.optim.AdamW(unet.parameters(), lr=config.sharpen_lr, betas=(0.5, 0.999), weight_decay=1e-2)
    d_opt = torch.optim.AdamW(critic.parameters(), lr=config.sharpen_critic_lr, betas=(0.5, 0.999), weight_decay=0.0)
    step, log = 0, []
    parts = {"model": unet, "ema": ema, "optimizer": g_opt, "critic": critic, "critic_optimizer": d_opt}
    state = load_checkpoint(path, config.sharpen_recipe())
    if state is not None:
        step, log = restore_training_state(state, parts, rng), state["log"]
    alphas = scheduler.alphas_cumprod.float().to(device)
    train_steps = int(scheduler.config.num_train_timesteps)
    size = config.unet_batch
    with tqdm(total=config.sharpen_steps, initial=step, desc="sharpen", unit="step") as bar:
        while step < config.sharpen_steps:
            batch = Batch(bank, config, rng, size).to(device)
            noise = torch.from_numpy(rng.standard_normal(batch.target.shape)).float().to(device)
            contexts = stream_contexts(unet, batch, config, rng, alphas)
            start = torch.from_numpy(rng.standard_normal(batch.target.shape)).float().to(device)
            # 1. critic: real frames against the frames a stream starts with
            with torch.no_grad():
                fake = one_step_clean(unet, start, contexts, batch.tokens, batch.pooled, alphas)
            d_loss = critic_loss(critic, batch.target, fake, batch.pooled, config.sharpen_r1)
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            # 2. denoiser: the usual v-prediction loss on real previous frames (which keeps frame-to-frame
            #    continuity), plus fooling the critic with its stream frames. The squared error is spread
            #    evenly over timesteps: at the sampler's first step it pulls towards the blurred average
            #    the critic is there to undo.
            t = torch.from_numpy(rng.integers(train_steps, size=size)).long().to(device)
            mse = v_prediction_loss(unet, batch, t, noise, alphas)
            generated = one_step_clean(unet, start, contexts, batch.tokens, batch.pooled, alphas)
            adversarial = F.softplus(-critic(generated, batch.pooled)).mean()
            # 3. the coarse layout and colours stay the trained denoiser's (which follow the text): the
            #    critic only adds detail within them
            with torch.no_grad():
                average = one_step_clean(teacher, start, contexts, batch.tokens, batch.pooled, alphas)
            anchor = F.mse_loss(F.avg_pool2d(generated, ANCHOR_POOL), F.avg_pool2d(average, ANCHOR_POOL))
            loss = mse + config.sharpen_weight * adversarial + config.sharpen_anchor * anchor
            g_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            g_opt.step()
            update_ema(ema, unet, config.ema_decay)
            step += 1
            log.append(
                {
                    "mse": round(mse.item(), 5),
                    "adversarial": round(adversarial.item(), 4),
                    "critic": round(d_loss.item(), 4),
                    "anchor": round(anchor.item(), 5),
                }
            )
            bar.update(1)
            recent = log[-50:]
            bar.set_postfix(
                {k: f"{np.mean([r[k] for r in recent]):.3f}" for k in ("mse", "adversarial", "critic", "anchor")}
            )
            if step % config.checkpoint_every == 0 or step == config.sharpen_steps:
                save_checkpoint(path, training_state(parts, rng, step, log=log), config.sharpen_recipe())
    return ema.eval(), log
