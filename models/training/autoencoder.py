"""Stage 1: the autoencoder, trained on random crops of world frames with an edge loss."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderTiny
from tqdm import tqdm

from .architecture import make_autoencoder
from .checkpoints import load_checkpoint, restore_training_state, save_checkpoint, training_state
from .config import TrainConfig
from .world_data import render_frame_pool

POOL_FRAMES = 2048
EVAL_FRAMES = 64


def to_unit_range(frames: np.ndarray) -> torch.Tensor:
    """uint8 `[B, H, W, 3]` -> float `[B, 3, H, W]` in [-1, 1], the autoencoder's input range."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical finite differences: where thin lines (windows, stars) live."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor, edge_weight: float) -> torch.Tensor:
    """MSE on pixels plus L1 on their gradients, so edges stay sharp rather than averaged away."""
    loss = F.mse_loss(output, target)
    for out_grad, target_grad in zip(image_gradients(output), image_gradients(target)):
        loss = loss + edge_weight * F.l1_loss(out_grad, target_grad)
    return loss


def psnr(output: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [-1, 1]."""
    mse = F.mse_loss(output.clamp(-1, 1), target).item()
    return 10 * math.log10(4.0 / max(mse, 1e-12))


def autoencode(vae: AutoencoderTiny, x: torch.Tensor) -> torch.Tensor:
    """Encode and decode without the byte quantization of `AutoencoderTiny.forward` (it blocks gradients)."""
    return vae.decoder(vae.encoder(x))


def _random_crops(pool: np.ndarray, rng: np.random.Generator, batch: int, crop: int) -> np.ndarray:
    index = rng.integers(len(pool), size=batch)
    size = pool.shape[1]
    ys = rng.integers(0, size - crop + 1, size=batch)
    xs = rng.integers(0, size - crop + 1, size=batch)
    return np.stack([pool[i, y : y + crop, x : x + crop] for i, y, x in zip(index, ys, xs)])


def train_autoencoder(
    config: TrainConfig, work_dir: Path, device: torch.device | str = "cpu"
) -> tuple[AutoencoderTiny, dict[str, float]]:
    """Train (or resume, or reload when done) the autoencoder on `device`; returns it and its evaluation figures."""
    path = work_dir / "autoencoder.pt"
    torch.manual_seed(config.seed)
    vae = make_autoencoder().to(device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.ae_lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, config.ae_steps), eta_min=1e-5)
    rng = np.random.default_rng([config.seed, 1])
    step = 0
    parts = {"model": vae, "optimizer": optimizer, "schedule": schedule}
    state = load_checkpoint(path, config.autoencoder_recipe())
    if state is not None:
        step = restore_training_state(state, parts, rng)
    pool = render_frame_pool(config.seed, POOL_FRAMES if config.ae_steps > 100 else 64)
    vae.train()
    with tqdm(total=config.ae_steps, initial=step, desc="autoencoder", unit="step") as bar:
        while step < config.ae_steps:
            x = to_unit_range(_random_crops(pool, rng, config.ae_batch, config.ae_crop)).to(device)
            loss = reconstruction_loss(autoencode(vae, x), x, config.ae_edge_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if step % config.checkpoint_every == 0 or step == config.ae_steps:
                save_checkpoint(path, training_state(parts, rng, step), config.autoencoder_recipe())
    vae.eval()
    return vae, evaluate_autoencoder(vae, config.seed)


@torch.no_grad()
def evaluate_autoencoder(vae: AutoencoderTiny, seed: int) -> dict[str, float]:
    """PSNR and edge fidelity on full frames the training never saw (another seed of the world)."""
    frames = to_unit_range(render_frame_pool(seed + 1000, EVAL_FRAMES)).to(vae.device)
    output = autoencode(vae, frames).clamp(-1, 1)
    edge_out = sum(g.abs().mean().item() for g in image_gradients(output))
    edge_ref = sum(g.abs().mean().item() for g in image_gradients(frames))
    return {"psnr_db": round(psnr(output, frames), 2), "edge_energy_ratio": round(edge_out / edge_ref, 3)}


@torch.no_grad()
def latent_scale(vae: AutoencoderTiny, seed: int) -> float:
    """Factor that gives the encoder's latents unit standard deviation (the UNet's working scale)."""
    frames = to_unit_range(render_frame_pool(seed + 2000, EVAL_FRAMES)).to(vae.device)
    return float(1.0 / vae.encoder(frames).std().clamp(min=1e-3))
