"""Training data from the procedural world: frame pools, and a bank of clips encoded once to latents."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import AutoencoderTiny
from tqdm import tqdm

from models.text import TextEncoder
from models.world import SceneSpec, all_specs, caption, describe, render_clip

MAX_START_FRAME = 24 * 60 * 10  # clips start anywhere in the first ten minutes of a scene


def render_frame_pool(seed: int, count: int) -> np.ndarray:
    """`count` single frames of random scenes at random times: uint8 `[count, 128, 128, 3]`."""
    rng = np.random.default_rng([seed, 2])
    frames = [
        render_clip(
            SceneSpec.random(rng), int(rng.integers(1 << 30)), 1, start_frame=int(rng.integers(MAX_START_FRAME))
        )[0]
        for _ in range(count)
    ]
    return np.stack(frames)


def render_stills(spec: SceneSpec, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` single frames of `spec` at random layouts and moments: uint8 `[count, 128, 128, 3]`."""
    return np.stack(
        [
            render_clip(spec, int(rng.integers(1 << 30)), 1, start_frame=int(rng.integers(MAX_START_FRAME)))[0]
            for _ in range(count)
        ]
    )


@dataclass
class ClipBank:
    """Consecutive-frame latents of many clips, with several training captions per clip."""

    latents: torch.Tensor  # [clips, frames, 4, 16, 16] float16, already multiplied by the latent scale
    specs: list[SceneSpec]
    tokens: torch.Tensor  # [clips, captions, 32, 384] float16 MiniLM token states
    captions: list[list[str]]


def _clip_specs(rng: np.random.Generator, count: int) -> list[SceneSpec]:
    """Every spec in turn (shuffled), so each attribute value is seen equally often."""
    everything = list(all_specs())
    specs: list[SceneSpec] = []
    while len(specs) < count:
        order = rng.permutation(len(everything))
        specs.extend(everything[i] for i in order)
    return specs[:count]


@torch.no_grad()
def build_clip_bank(
    seed: int,
    clips: int,
    frames: int,
    captions_per_clip: int,
    vae: AutoencoderTiny,
    scale: float,
    text: TextEncoder,
) -> ClipBank:
    """Render `clips` clips, encode them with the trained autoencoder, caption and embed them."""
    rng = np.random.default_rng([seed, 3])
    specs = _clip_specs(rng, clips)
    latents = torch.empty(clips, frames, 4, 16, 16, dtype=torch.float16)
    captions: list[list[str]] = []
    for index, spec in enumerate(tqdm(specs, desc="render + encode clips", unit="clip")):
        clip = render_clip(spec, int(rng.integers(1 << 30)), frames, start_frame=int(rng.integers(MAX_START_FRAME)))
        x = torch.from_numpy(clip).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(vae.device)
        latents[index] = (vae.encoder(x) * scale).half().cpu()
        captions.append([caption(spec, rng, split="train") for _ in range(captions_per_clip)])
    flat = [c for per_clip in captions for c in per_clip]
    states = []
    for start in tqdm(range(0, len(flat), 256), desc="embed captions", unit="batch"):
        states.append(text.encode(flat[start : start + 256]).half().cpu())
    tokens = torch.cat(states).reshape(clips, captions_per_clip, *states[0].shape[1:])
    return ClipBank(latents=latents, specs=specs, tokens=tokens, captions=captions)


@torch.no_grad()
def with_canonical_captions(bank: ClipBank, text: TextEncoder) -> ClipBank:
    """`bank` with each clip's canonical caption (`describe(spec)`, which names the camera's motion) added as its
    last caption."""
    canonical = [describe(spec) for spec in bank.specs]
    states = torch.cat([text.encode(canonical[i : i + 256]).half().cpu() for i in range(0, len(canonical), 256)])
    tokens = torch.cat([bank.tokens, states[:, None]], 1)
    captions = [[*own, words] for own, words in zip(bank.captions, canonical)]
    return ClipBank(latents=bank.latents, specs=bank.specs, tokens=tokens, captions=captions)
