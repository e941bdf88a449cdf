"""A UNet with a copy head in the engine and the per-call pipeline: what each frame mixes, and that both agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import StreamingEngine
from models.copying import SOURCES
from tests.support.tiny_model import write_tiny_pipeline

OCEAN, CITY = "a calm ocean at dawn", "a city skyline at night"


@pytest.fixture(scope="module")
def copying_engine(tmp_path_factory: pytest.TempPathFactory) -> StreamingEngine:
    return StreamingEngine.from_pretrained(write_tiny_pipeline(tmp_path_factory.mktemp("copying"), copy_head=True))


def _favour(engine: StreamingEngine, source: int) -> None:
    """Make the copy head put all of every cell's weight on one source (0 drawing, 1 anchor, 2 previous) with a
    still kernel, whatever the UNet computes."""
    with torch.no_grad():
        head = engine.unet.conv_out
        channels = engine.latent_channels
        head.weight[channels:] = 0.0
        head.bias[channels:] = 0.0
        head.bias[channels + source] = 60.0
        head.bias[channels + SOURCES + 4] = 60.0  # the kernel's centre


def test_a_continuation_frame_mixes_its_anchor_and_previous_frame_and_new_prompts_draw(
    copying_engine: StreamingEngine,
) -> None:
    engine = copying_engine
    assert engine.copy_head and engine.takes_anchor
    ocean, city = engine.encode_prompt(OCEAN), engine.encode_prompt(CITY)
    _favour(engine, source=1)  # all anchor
    state = engine.new_stream(3)
    engine.advance([(state, ocean)])
    opening = state.latent.clone()
    assert opening.abs().sum() > 0  # a first frame is the UNet's drawing, not its (absent) anchor
    engine.advance([(state, ocean)])
    torch.testing.assert_close(state.latent, opening)  # a continuation keeps its anchor
    engine.advance([(state, city)])
    steered = state.latent.clone()
    assert (steered - opening).abs().mean() > 1e-3  # a new prompt's first frame is drawn, not copied
    _favour(engine, source=2)  # all the previous frame, unmoved
    started = engine.new_stream(4)
    started.latent = steered.clone()
    engine.advance([(started, city)])
    torch.testing.assert_close(started.latent, steered)


def test_the_engine_matches_the_per_call_pipeline_with_a_copy_head(tmp_path: Path) -> None:
    engine = StreamingEngine.from_pretrained(write_tiny_pipeline(tmp_path / "model", seed=2, copy_head=True), steps=2)
    cond = engine.encode_prompt(OCEAN)
    state = engine.new_stream(11)
    generator = torch.Generator().manual_seed(11)
    previous = anchor = None
    engine.noise_drift = 1.0  # the per-call pipeline draws fresh noise every frame
    for _ in range(3):
        frame = engine.generate([(state, cond)])[0]
        out = engine.pipeline(cond, previous, anchor, num_inference_steps=engine.steps, generator=generator)
        torch.testing.assert_close(out.latents[0], state.latent, atol=1e-4, rtol=1e-4)
        assert np.abs(frame.astype(int) - out.images[0].astype(int)).max() <= 2
        previous = out.latents
        anchor = previous if anchor is None else anchor
