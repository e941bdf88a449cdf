"""`pixelcast bench make-sd`: a random-weight Stable-Diffusion-layout pipeline folder, built from configs.

Speed does not depend on the weights, so an SD-turbo-sized folder with random weights measures what
SD-turbo itself would cost, with nothing downloaded. The `tiny` size is for tests (32x32 pixels).

The tokenizer is byte-level with no merges (every character is a token), written locally; real
SD-turbo uses CLIP's 49,408-token BPE vocabulary. That changes the size of the token-embedding table,
not the cost of a frame: prompts are encoded once and cached, and the UNet sees the same
`[77, 1024]` context either way.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .report import shown_path


@dataclass(frozen=True)
class SDSize:
    """The shapes of one pipeline size: UNet, autoencoder and text-encoder configs, and token count."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    text: dict[str, Any]
    max_tokens: int
    notes: str = ""


SIZES: dict[str, SDSize] = {
    # SD-turbo is Stable Diffusion 2.1 distilled: its UNet, autoencoder and OpenCLIP-H text encoder shapes.
    "sd-turbo": SDSize(
        unet=dict(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            attention_head_dim=(5, 10, 20, 20),
            cross_attention_dim=1024,
            use_linear_projection=True,
            norm_num_groups=32,
        ),
        vae=dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
            norm_num_groups=32,
            sample_size=512,
        ),
        text=dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=23,
            num_attention_heads=16,
            hidden_act="gelu",
            projection_dim=512,
        ),
        max_tokens=77,
        notes="SD-turbo shapes (UNet 865M parameters, 512x512); random weights, byte-level tokenizer",
    ),
    "tiny": SDSize(
        unet=dict(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            attention_head_dim=4,
            cross_attention_dim=32,
            norm_num_groups=16,
        ),
        vae=dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            block_out_channels=(16, 32, 32),
            latent_channels=4,
            norm_num_groups=16,
            sample_size=32,
        ),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
        max_tokens=16,
        notes="a tiny pipeline for tests (32x32)",
    ),
}
SD_SCHEDULE = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="epsilon")


def _byte_unicode_characters() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the bytes 0-255 (GPT-2 / CLIP)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def _write_byte_tokenizer(folder: Path, max_tokens: int) -> Any:
    """A CLIP tokenizer with a byte-level vocabulary and no merges, saved under `folder` and loaded back."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_unicode_characters()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=max_tokens, local_files_only=True)


def build_random_sd(
    folder: Path,
    size: str = "tiny",
    *,
    scheduler: str = "euler",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    cross_attention_gain: float = 1.0,
) -> Path:
    """Save a random-weight Stable-Diffusion-layout pipeline of `size` (see `SIZES`) under `folder`.

    `scheduler` is "euler" (SD-turbo's: Euler with trailing timesteps) or "ddim" (SD 1.x's settings).
    `cross_attention_gain` scales the cross-attention outputs: random cross-attention barely moves the
    picture, and tests that check that prompts matter need it to.
    """
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from diffusers.models.attention_processor import Attention
    from transformers import CLIPTextConfig, CLIPTextModel

    shape = SIZES[size]
    with tempfile.TemporaryDirectory() as source:  # the pipeline saves its own copy of the tokenizer
        tokenizer = _write_byte_tokenizer(Path(source), shape.max_tokens)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                max_position_embeddings=shape.max_tokens,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                **shape.text,
            )
        )
        unet = UNet2DConditionModel(**shape.unet)
        vae = AutoencoderKL(**shape.vae)
        if cross_attention_gain != 1.0:
            for module in unet.modules():
                if isinstance(module, Attention) and module.is_cross_attention:
                    module.to_out[0].weight.data.mul_(cross_attention_gain)
    if scheduler == "euler":
        noise_scheduler = EulerDiscreteScheduler(**SD_SCHEDULE, timestep_spacing="trailing", steps_offset=1)
    elif scheduler == "ddim":
        noise_scheduler = DDIMScheduler(
            **SD_SCHEDULE, timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False, clip_sample=False
        )
    else:
        raise ValueError(f"unknown scheduler {scheduler!r}; expected 'euler' or 'ddim'")
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=noise_scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.to(dtype)
    pipeline.save_pretrained(folder)
    return folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `pixelcast bench make-sd`."""
    parser.add_argument("--size", choices=sorted(SIZES), default="sd-turbo", help="pipeline shapes (default sd-turbo)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the pipeline to")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="weights on disk")
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    """Entry point of `pixelcast bench make-sd`."""
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{shown_path(args.out)} is not empty; choose a new folder")
    print(f"building a random-weight {args.size} pipeline ({SIZES[args.size].notes}) ...")
    build_random_sd(args.out, args.size, dtype=getattr(torch, args.dtype), seed=args.seed)
    print(f"saved to {shown_path(args.out)}; stream from it with --model {shown_path(args.out)}")
    return 0
