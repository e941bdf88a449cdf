"""A tiny `PixelcastPipeline` with random weights: 64x64 frames from a UNet of two small blocks.

The server loads it with the same `from_pretrained` as the shipped model and runs every part of the
engine on it (grounding aside: it has no grounder), in a fraction of the time; its pictures mean
nothing, so tests of what is drawn use the shipped model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderTiny, UNet2DConditionModel

from models.camera import CameraReader
from models.copying import COPY_OUTPUTS
from models.pipeline import PixelcastPipeline
from models.training.architecture import make_scheduler

TEXT_DIM = 384  # MiniLM's token states
LATENT_SIZE = 8
FRAME_SIZE = 64  # LATENT_SIZE x 2 ** 3 (four decoder blocks)


TINY_CAMERAS = ["static", "pan_left", "pan_right", "zoom_in"]
TINY_PACES = ["calm", "lively"]


def tiny_camera_reader() -> CameraReader:
    """A camera reader with random token weights and the world's cameras and paces; motion per second:
    pans of a quarter (calm) and half (lively) a frame width, a zoom of 10% and 20%."""
    return CameraReader(
        cameras=TINY_CAMERAS,
        paces=TINY_PACES,
        pan_per_second=[[0.0, 0.0], [-0.25, -0.5], [0.25, 0.5], [0.0, 0.0]],
        zoom_per_second=[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.1, 0.2]],
        embedding_dim=TEXT_DIM,
    )


def write_tiny_pipeline(folder: Path, seed: int = 0, *, copy_head: bool = False, camera: bool = False) -> Path:
    """Save a tiny random pipeline to `folder` (diffusers layout) and return it; with `copy_head`, its UNet
    also puts out a copy head's channels (`models.copying`); with `camera`, it has a `tiny_camera_reader`."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=12,  # noisy latent, previous frame's latent and the stream's anchor latent
        out_channels=4 + (COPY_OUTPUTS if copy_head else 0),
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=4,
        cross_attention_dim=TEXT_DIM,
        class_embed_type="projection",
        projection_class_embeddings_input_dim=TEXT_DIM,
    )
    vae = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
    )
    reader = tiny_camera_reader() if camera else None
    PixelcastPipeline(unet=unet, vae=vae, scheduler=make_scheduler(), camera=reader).save_pretrained(folder)
    return folder
