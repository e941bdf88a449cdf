"""The engine streams from any local diffusers text-to-image folder, not only the shipped model.

A tiny random-weight pipeline in the Stable-Diffusion layout (CLIP tokenizer and text encoder,
`UNet2DConditionModel`, `AutoencoderKL`, scheduler) is built from configs, saved with
`save_pretrained` and loaded back through `StreamingEngine.from_pretrained`. Nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderTiny, StableDiffusionPipeline

from benchmarks.random_sd import SIZES, build_random_sd
from models import StreamingEngine, slerp_conditioning
from models.engine import _ddim_schedule
from models.loading import PIXELCAST, TEXT_TO_IMAGE, check_pipeline_folder, load_pipeline
from models.tuning.speed import warm_up
from tests.models.streaming import assert_batch_equals_streams_alone, rollout

TOKENS = SIZES["tiny"].max_tokens  # tokenizer model_max_length (77 in real Stable Diffusion)
CROSS_ATTENTION_GAIN = 8.0
OCEAN = "a calm ocean at sunset"
CITY = "a busy city at night"


def build_tiny_sd(folder: Path, *, scheduler: str = "euler", dtype: torch.dtype = torch.float32) -> None:
    """Save a random-weight Stable-Diffusion-layout pipeline (32x32 pixels) under `folder`."""
    build_random_sd(folder, "tiny", scheduler=scheduler, dtype=dtype, cross_attention_gain=CROSS_ATTENTION_GAIN)


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-sd") / "pipeline"
    build_tiny_sd(folder)
    return folder


@pytest.fixture(scope="module")
def engine(sd_folder: Path) -> StreamingEngine:
    return StreamingEngine.from_pretrained(sd_folder, steps=1)


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


def test_loads_the_folder_through_diffusers(engine: StreamingEngine, sd_folder: Path) -> None:
    assert check_pipeline_folder(sd_folder) == TEXT_TO_IMAGE
    assert engine.kind == TEXT_TO_IMAGE
    assert isinstance(engine.pipeline, StableDiffusionPipeline)
    assert (engine.height, engine.width, engine.steps) == (32, 32, 1)
    assert engine.dtype == torch.float32


def test_prompt_encoding_matches_the_pipeline(engine: StreamingEngine) -> None:
    cond = engine.encode_prompt(OCEAN)
    assert cond.shape == (TOKENS, 32)
    reference = engine.pipeline.encode_prompt(OCEAN, engine.device, 1, False)[0][0]
    torch.testing.assert_close(cond, reference)
    assert engine.prompts.text_encoder.encode([OCEAN])[0].equal(cond)  # cached per text
    mid = slerp_conditioning(cond, engine.encode_prompt(CITY), 0.5)
    assert mid.shape == cond.shape and torch.isfinite(mid).all()
    assert engine.generate([(engine.new_stream(0), mid)])[0].shape == (32, 32, 3)


def test_frames_are_coherent_over_time(engine: StreamingEngine) -> None:
    frames = rollout(engine, seed=0, prompt=OCEAN, frames=6)
    other_seed = rollout(engine, seed=1, prompt=OCEAN, frames=1)[0]
    for frame in frames:
        assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
        assert frame.astype(float).std() > 5.0
    steps = [mean_abs(a, b) for a, b in zip(frames, frames[1:])]
    across_seeds = mean_abs(frames[0], other_seed)
    assert min(steps) > 0.05  # the picture moves...
    assert max(steps) < 0.35 * across_seeds  # ...but only a little from frame to frame
    assert mean_abs(frames[0], frames[-1]) > min(steps)  # and keeps drifting


def test_same_seed_same_frames_and_prompt_matters(engine: StreamingEngine) -> None:
    first = rollout(engine, seed=7, prompt=OCEAN, frames=2)
    again = rollout(engine, seed=7, prompt=OCEAN, frames=2)
    other = rollout(engine, seed=7, prompt=CITY, frames=2)
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a, b)
        assert mean_abs(a, c) > 2.0


def test_batch_equals_streams_alone(engine: StreamingEngine) -> None:
    assert_batch_equals_streams_alone(engine, OCEAN, CITY)


def test_server_calls_work(engine: StreamingEngine) -> None:
    """What `pixelcast serve --model <folder>` does with the engine."""
    warm_up(engine, batch_sizes=(1, 2))
    assert engine.width % 2 == 0 and engine.height % 2 == 0  # the video encoder needs even sizes
    engine.steps = 2
    try:
        frame = engine.generate([(engine.new_stream(3), engine.encode_prompt(CITY))])[0]
    finally:
        engine.steps = 1
    assert frame.shape == (engine.height, engine.width, 3)


def test_leading_spacing_and_float16_weights(tmp_path: Path) -> None:
    """An SD-1.x-like DDIM config (leading spacing) saved in float16 loads as float32 and samples from t = 999."""
    folder = tmp_path / "fp16"
    build_tiny_sd(folder, scheduler="ddim", dtype=torch.float16)
    engine = StreamingEngine.from_pretrained(folder, steps=1)
    assert engine.dtype == torch.float32
    assert engine.pipeline.text_encoder.dtype == torch.float32 and engine.vae.dtype == torch.float32
    assert engine.encode_prompt(OCEAN).dtype == torch.float32
    schedule = _ddim_schedule(engine.pipeline.scheduler.config, 1, engine.device)
    assert [int(t) for t in schedule.timesteps] == [999]
    assert [int(t) for t in _ddim_schedule(engine.pipeline.scheduler.config, 2, engine.device).timesteps] == [999, 499]
    frames = rollout(engine, seed=0, prompt=OCEAN, frames=2)
    assert frames[0].shape == (32, 32, 3) and frames[0].std() > 5.0


def test_tiny_autoencoder_folder(sd_folder: Path, tmp_path: Path) -> None:
    """A folder whose vae is an `AutoencoderTiny` (as with TAESD) streams at its own scale factor."""
    folder = tmp_path / "taesd"
    shutil.copytree(sd_folder, folder)
    shutil.rmtree(folder / "vae")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        AutoencoderTiny(
            encoder_block_out_channels=(16, 16, 16, 16),
            decoder_block_out_channels=(16, 16, 16, 16),
            num_encoder_blocks=(1, 1, 1, 1),
            num_decoder_blocks=(1, 1, 1, 1),
            latent_channels=4,
        ).save_pretrained(folder / "vae")
    index = json.loads((folder / "model_index.json").read_text())
    index["vae"] = ["diffusers", "AutoencoderTiny"]
    (folder / "model_index.json").write_text(json.dumps(index))
    engine = StreamingEngine.from_pretrained(folder, steps=1)
    assert isinstance(engine.vae, AutoencoderTiny)
    assert (engine.height, engine.width) == (64, 64)  # 8x8 latent, three 2x upsamplings
    frame = rollout(engine, seed=0, prompt=OCEAN, frames=1)[0]
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8


def test_shipped_folder_is_pixelcast_kind() -> None:
    from models import default_model_path

    assert check_pipeline_folder(default_model_path()) == PIXELCAST


def test_not_a_pipeline_gives_clear_errors(sd_folder: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"empty.*model_index\.json"):
        StreamingEngine.from_pretrained(empty)
    with pytest.raises(ValueError, match="not a folder"):
        load_pipeline(tmp_path / "nowhere")

    no_unet = tmp_path / "no-unet"
    shutil.copytree(sd_folder, no_unet)
    shutil.rmtree(no_unet / "unet")
    index = json.loads((no_unet / "model_index.json").read_text())
    del index["unet"]
    (no_unet / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"no-unet.*no unet"):
        StreamingEngine.from_pretrained(no_unet)

    no_text = tmp_path / "no-text"
    shutil.copytree(sd_folder, no_text)
    index = json.loads((no_text / "model_index.json").read_text())
    index["text_encoder"] = [None, None]
    (no_text / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"no-text.*missing text_encoder"):
        StreamingEngine.from_pretrained(no_text)

    no_cross = tmp_path / "no-cross-attention"
    shutil.copytree(sd_folder, no_cross)
    config = json.loads((no_cross / "unet" / "config.json").read_text())
    config["down_block_types"] = ["DownBlock2D", "DownBlock2D"]
    config["up_block_types"] = ["UpBlock2D", "UpBlock2D"]
    config["mid_block_type"] = "UNetMidBlock2D"
    (no_cross / "unet" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"no-cross-attention.*cross-attention"):
        StreamingEngine.from_pretrained(no_cross)
