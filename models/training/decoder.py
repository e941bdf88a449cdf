"""Stage 1b: the decoder learns to draw edges (L1, image gradients and a patch critic), the encoder frozen.

Trained on squared error alone, the autoencoder returns the average of every picture its small latent
allows: outlines soften and lose half their gradient energy. As the SD VAE and TAESD are trained, a
small patch discriminator (hinge loss) now tells real frames from decoded ones, and the decoder learns
to draw what it cannot tell apart, with L1 on pixels and on image gradients keeping it on the picture.
The encoder, and so every latent the denoiser learns from, stays as stage 1 left it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderTiny
from torch import nn
from tqdm import tqdm

from .autoencoder import evaluate_autoencoder, image_gradients, to_unit_range
from .checkpoints import load_checkpoint, restore_training_state, save_checkpoint, training_state
from .config import TrainConfig
from .world_data import render_frame_pool

POOL_FRAMES = 2048


class PatchCritic(nn.Module):
    """A three-layer patch discriminator on RGB frames: one logit per overlapping patch."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.GroupNorm(8, 2 * width),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 4, stride=1, padding=1),
            nn.GroupNorm(8, 4 * width),
            nn.LeakyReLU(0.2),
            nn.Conv2d(4 * width, 1, 4, stride=1, padding=1),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Patch logits `[B, 1, h, w]`; higher means more like a real frame."""
        return self.body(frames)


def pixel_loss(output: torch.Tensor, target: torch.Tensor, edge_weight: float) -> torch.Tensor:
    """L1 on pixels and on their horizontal and vertical differences."""
    loss = F.l1_loss(output, target)
    for out_grad, target_grad in zip(image_gradients(output), image_gradients(target)):
        loss = loss + edge_weight * F.l1_loss(out_grad, target_grad)
    return loss


def adversarial_step(
    vae: AutoencoderTiny,
    critic: PatchCritic,
    optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
    latents: torch.Tensor,
    target: torch.Tensor,
    edge_weight: float,
    adversarial: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the decoder (pixel loss, minus `adversarial` x the critic's score) and then of the critic
    (hinge loss, `target` frames against decoded ones); returns both losses."""
    decoder_opt, critic_opt = optimizers
    out = vae.decoder(latents)
    loss = pixel_loss(out, target, edge_weight)
    if adversarial:
        loss = loss - adversarial * critic(out).mean()
    decoder_opt.zero_grad(set_to_none=True)
    loss.backward()
    decoder_opt.step()
    critic_loss = F.relu(1 - critic(target)).mean() + F.relu(1 + critic(out.detach())).mean()
    critic_opt.zero_grad(set_to_none=True)
    critic_loss.backward()
    critic_opt.step()
    return loss, critic_loss


def train_decoder(
    config: TrainConfig, vae: AutoencoderTiny, work_dir: Path, device: torch.device | str = "cpu"
) -> tuple[AutoencoderTiny, dict[str, float]]:
    """Fine-tune `vae`'s decoder (resuming from `work_dir`); returns the autoencoder and its evaluation figures."""
    path = work_dir / "decoder.pt"
    torch.manual_seed(config.seed + 7)
    critic = PatchCritic().to(device)
    vae.encoder.requires_grad_(False)
    decoder_opt = torch.optim.Adam(vae.decoder.parameters(), lr=config.decoder_lr, betas=(0.5, 0.9))
    critic_opt = torch.optim.Adam(critic.parameters(), lr=config.decoder_lr, betas=(0.5, 0.9))
    rng = np.random.default_rng([config.seed, 11])
    parts = {"model": vae, "critic": critic, "decoder_opt": decoder_opt, "critic_opt": critic_opt}
    step = 0
    state = load_checkpoint(path, config.decoder_recipe())
    if state is not None:
        step = restore_training_state(state, parts, rng)
    pool = render_frame_pool(config.seed + 11, POOL_FRAMES if config.decoder_steps > 100 else 32)
    vae.decoder.train()
    with tqdm(total=config.decoder_steps, initial=step, desc="decoder", unit="step") as bar:
        while step < config.decoder_steps:
            x = to_unit_range(pool[rng.integers(len(pool), size=config.decoder_batch)]).to(device)
            with torch.no_grad():
                latents = vae.encoder(x)
            adversarial = config.decoder_adversarial if step >= config.decoder_adversarial_from else 0.0
            loss, critic_loss = adversarial_step(
                vae, critic, (decoder_opt, critic_opt), latents, x, config.ae_edge_weight, adversarial
            )
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", critic=f"{critic_loss.item():.3f}")
            if step % config.checkpoint_every == 0 or step == config.decoder_steps:
                save_checkpoint(path, training_state(parts, rng, step), config.decoder_recipe())
    vae.requires_grad_(True)
    vae.eval()
    return vae, evaluate_autoencoder(vae, config.seed)
