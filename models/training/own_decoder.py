"""Stage 6d: the decoder learns to draw the denoiser's own latents as pictures of the world.

A one-step frame from text alone is the denoiser's estimate of the average of every picture its text
allows, and the decoder, trained on the encoder's latents of single pictures, draws that average as a
haze. Here the decoder is fine-tuned on the latents streams actually hold (made from text alone, as a
stream makes them, by the finished denoiser), each with the render of its scene nearest to what the
decoder drew of it as target: L1 on pixels and image gradients, and the patch critic of stage 1b, so
that it draws one sharp picture of the scene where it drew their blur. Half of every batch keeps the
stage 1b task (a world frame through the frozen encoder back to itself), so real latents still decode
as before. The denoiser and the encoder do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderTiny, DDIMScheduler, UNet2DConditionModel
from tqdm import tqdm

from models.evaluation.metrics import cell_means
from models.pipeline import latents_to_uint8
from models.text import sentence_embedding

from .autoencoder import evaluate_autoencoder, to_unit_range
from .checkpoints import load_checkpoint, restore_training_state, save_checkpoint, training_state
from .config import TrainConfig
from .decoder import POOL_FRAMES, PatchCritic, adversarial_step
from .first_frames import StillBank
from .rollout import one_step_frame
from .world_data import ClipBank, render_frame_pool, render_stills

KEPT_FRAMES = (0, 1, 3, 11)
"""Which frames of each stream from text alone the stage keeps: its first, and later ones as it settles."""
NEAREST_CELL = 4
"""Targets are nearest at 4x4-pixel cell means (32x32), the layout the fidelity evaluation compares."""


@dataclass
class OwnLatents:
    """Latents of streams from text alone, and for each the render of its scene it should decode to."""

    latents: torch.Tensor  # [rows, 4, 16, 16] float16, unscaled (the decoder's input)
    targets: np.ndarray  # [rows, 128, 128, 3] uint8


@torch.no_grad()
def build_own_latents(
    config: TrainConfig,
    bank: ClipBank,
    stills: StillBank,
    unet: UNet2DConditionModel,
    vae: AutoencoderTiny,
    scheduler: DDIMScheduler,
    device: torch.device | str = "cpu",
) -> OwnLatents:
    """Stream `config.own_decoder_clips` bank scenes from text alone (half in their canonical caption, half in one
    of the clip's phrasings), keep `KEPT_FRAMES`, and pair each kept latent with the nearest of
    `config.own_decoder_stills` new renders of its scene (nearest to what the decoder draws of it now)."""
    rng = np.random.default_rng([config.seed, 29])
    clips = rng.choice(len(bank.specs), size=min(config.own_decoder_clips, len(bank.specs)), replace=False)
    alphas = scheduler.alphas_cumprod.float().to(device)
    scale = float(vae.config.scaling_factor)
    unet = unet.to(device).eval()
    latents, targets = [], []
    group = 64
    for start in tqdm(range(0, len(clips), group), desc="own latents", unit="batch"):
        rows = clips[start : start + group]
        tokens = bank.tokens[rows, rng.integers(bank.tokens.shape[1], size=len(rows))].float()
        canonical = rng.random(len(rows)) < 0.5
        tokens[canonical] = stills.canonical[rows[canonical]].float()
        tokens = tokens.to(device)
        pooled = sentence_embedding(tokens)
        context = torch.zeros(len(rows), *bank.latents.shape[2:], device=device)
        renders = [render_stills(bank.specs[c], config.own_decoder_stills, rng) for c in rows]
        for frame in range(max(KEPT_FRAMES) + 1):
            noise = torch.from_numpy(rng.standard_normal(context.shape)).float().to(device)
            context = one_step_frame(unet, context, tokens, pooled, noise, alphas)
            if frame not in KEPT_FRAMES:
                continue
            raw = context / scale
            drawn = latents_to_uint8(vae.decoder(raw))
            for row, candidates in enumerate(renders):
                own = cell_means(drawn[row : row + 1], NEAREST_CELL)
                distances = ((cell_means(candidates, NEAREST_CELL) - own) ** 2).mean(axis=(1, 2, 3))
                targets.append(candidates[int(distances.argmin())])
            latents.append(raw.half().cpu())
    return OwnLatents(latents=torch.cat(latents), targets=np.stack(targets))


def train_own_decoder(
    config: TrainConfig,
    own: OwnLatents,
    vae: AutoencoderTiny,
    work_dir: Path,
    device: torch.device | str = "cpu",
) -> tuple[AutoencoderTiny, dict[str, float]]:
    """Fine-tune `vae`'s decoder on `own` and on world frames (resuming from `work_dir`); returns the autoencoder
    and its round-trip figures on unseen world frames."""
    path = work_dir / "own_decoder.pt"
    torch.manual_seed(config.seed + 31)
    critic = PatchCritic().to(device)
    vae.encoder.requires_grad_(False)
    decoder_opt = torch.optim.Adam(vae.decoder.parameters(), lr=config.own_decoder_lr, betas=(0.5, 0.9))
    critic_opt = torch.optim.Adam(critic.parameters(), lr=config.own_decoder_lr, betas=(0.5, 0.9))
    rng = np.random.default_rng([config.seed, 31])
    parts = {"model": vae, "critic": critic, "decoder_opt": decoder_opt, "critic_opt": critic_opt}
    step = 0
    state = load_checkpoint(path, config.own_decoder_recipe())
    if state is not None:
        step = restore_training_state(state, parts, rng)
    pool = render_frame_pool(config.seed + 11, POOL_FRAMES if config.own_decoder_steps > 100 else 32)
    half = config.decoder_batch // 2
    vae.decoder.train()
    with tqdm(total=config.own_decoder_steps, initial=step, desc="own decoder", unit="step") as bar:
        while step < config.own_decoder_steps:
            world = to_unit_range(pool[rng.integers(len(pool), size=half)]).to(device)
            picked = rng.integers(len(own.latents), size=config.decoder_batch - half)
            with torch.no_grad():
                latents = torch.cat([vae.encoder(world), own.latents[picked].float().to(device)])
            target = torch.cat([world, to_unit_range(own.targets[picked]).to(device)])
            loss, critic_loss = adversarial_step(
                vae, critic, (decoder_opt, critic_opt), latents, target, config.ae_edge_weight,
                config.decoder_adversarial,
            )
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", critic=f"{critic_loss.item():.3f}")
            if step % config.checkpoint_every == 0 or step == config.own_decoder_steps:
                save_checkpoint(path, training_state(parts, rng, step), config.own_decoder_recipe())
    vae.requires_grad_(True)
    vae.eval()
    return vae, evaluate_autoencoder(vae, config.seed)
