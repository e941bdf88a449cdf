"""The camera reader and the moved anchor: how a picture is moved, what motion a prompt's tokens read as, and
how the engine and the per-call pipeline draw continuations from the moved anchor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import StreamingEngine
from models.camera import CameraReader, Motion, move
from tests.support.tiny_model import TEXT_DIM, TINY_CAMERAS, TINY_PACES, tiny_camera_reader, write_tiny_pipeline

CAMERA_LOGITS = len(TINY_CAMERAS) + 1  # each value, then "unnamed"


def _reads(reader: CameraReader, camera: str | None, pace: str | None) -> None:
    """Make `reader` read every conditioning as `camera` at `pace` (None: unnamed), whatever its tokens."""
    with torch.no_grad():
        reader.tokens.weight.zero_()
        reader.tokens.bias.zero_()
        reader.tokens.bias[TINY_CAMERAS.index(camera) if camera else len(TINY_CAMERAS)] = 30.0
        reader.tokens.bias[CAMERA_LOGITS + (TINY_PACES.index(pace) if pace else len(TINY_PACES))] = 30.0


def test_moving_by_a_cell_slides_the_picture_and_repeats_the_edge() -> None:
    latents = torch.randn(2, 4, 16, 16)
    none = torch.zeros(2)
    torch.testing.assert_close(move(latents, none, none), latents)
    moved = move(latents, torch.full((2,), 1 / 16), none)  # the view turns right by one cell of 16
    torch.testing.assert_close(moved[..., :-1], latents[..., 1:])
    torch.testing.assert_close(moved[..., -1], latents[..., -1])


def test_zooming_in_twice_halves_a_gradient() -> None:
    ramp = torch.linspace(-1 + 1 / 16, 1 - 1 / 16, 16).expand(1, 1, 16, 16)
    zoomed = move(ramp, torch.zeros(1), torch.ones(1))
    torch.testing.assert_close(zoomed, ramp / 2)


def test_the_reader_gives_the_motion_of_the_camera_and_pace_it_reads() -> None:
    reader = tiny_camera_reader().eval()
    tokens = torch.zeros(3, 4, TEXT_DIM)
    tokens[:, :2] = torch.randn(3, 2, TEXT_DIM)  # two word tokens, then padding
    _reads(reader, "pan_right", "lively")
    torch.testing.assert_close(reader.motion(tokens).pan, torch.full((3,), 0.5 / 24))
    _reads(reader, "pan_left", None)  # no pace named: between calm and lively
    torch.testing.assert_close(reader.motion(tokens).pan, torch.full((3,), -0.375 / 24))
    _reads(reader, "zoom_in", "calm")
    motion = reader.motion(tokens)
    torch.testing.assert_close(motion.zoom, torch.full((3,), 0.1 / 24))
    torch.testing.assert_close(motion.pan, torch.zeros(3))
    _reads(reader, None, "lively")  # a pace without a camera does not move the picture
    motion = reader.motion(tokens)
    assert motion.pan.abs().max() == 0 and motion.zoom.abs().max() == 0


def test_a_camera_moves_in_a_straight_line_and_rests_after_its_travel() -> None:
    reader = tiny_camera_reader()  # max_travel 0.25
    motion = Motion(pan=torch.tensor([0.1, 0.1, 0.1, 0.1]), zoom=torch.tensor([0.0, 0.0, 0.0, 0.2]))
    pan, zoom = reader.travel(motion, torch.tensor([1, 2, 5, 2]))
    torch.testing.assert_close(pan, torch.tensor([0.1, 0.2, 0.25, 0.125]))
    torch.testing.assert_close(zoom, torch.tensor([0.0, 0.0, 0.0, 0.25]))  # the zoom reached it first


@pytest.fixture
def panning_engine(tmp_path: Path) -> StreamingEngine:
    engine = StreamingEngine.from_pretrained(write_tiny_pipeline(tmp_path / "model", seed=4, camera=True))
    assert engine.camera is not None
    engine.noise_drift = 0.0
    return engine


def test_continuations_come_from_the_moved_anchor_and_the_camera_comes_to_rest(
    panning_engine: StreamingEngine,
) -> None:
    engine = panning_engine
    _reads(engine.camera, "pan_right", "lively")  # half a frame width a second: 1/48 a frame
    engine.camera.register_to_config(max_travel=0.1)  # reached in the fifth frame after the anchor
    cond = engine.encode_prompt("anything at all")
    state = engine.new_stream(5)
    engine.advance([(state, cond)])
    opening = state.latent.clone()
    made = []
    for _ in range(8):
        engine.advance([(state, cond)])
        made.append(state.latent.clone())
        assert torch.equal(state.anchor, opening)  # drawn from the first frame, never from a frame drawn since
    assert state.anchor_frames == 8
    assert (made[3] - made[0]).abs().mean() > 1e-4  # moving
    for later in made[5:]:
        torch.testing.assert_close(later, made[4])  # at rest
    # a continuation is what the UNet draws from its moved anchor alone: the previous frame does not matter
    twin = engine.new_stream(5)
    engine.advance([(twin, cond)])
    twin.latent = torch.randn_like(opening)
    engine.advance([(twin, cond)])
    torch.testing.assert_close(twin.latent, made[0])


def test_a_still_camera_holds_its_picture(panning_engine: StreamingEngine) -> None:
    engine = panning_engine
    _reads(engine.camera, None, None)
    cond = engine.encode_prompt("anything at all")
    state = engine.new_stream(6)
    frames = [engine.generate([(state, cond)])[0] for _ in range(30)]
    assert state.anchor_frames == 29  # never worn out
    assert all(np.array_equal(frames[1], frame) for frame in frames[2:])


def test_the_engine_matches_the_per_call_pipeline_with_a_camera(tmp_path: Path) -> None:
    engine = StreamingEngine.from_pretrained(write_tiny_pipeline(tmp_path / "model", seed=3, camera=True), steps=2)
    _reads(engine.camera, "zoom_in", "lively")
    engine.camera.register_to_config(max_travel=0.03)  # reached in the fourth frame after the anchor
    cond = engine.encode_prompt("closer and closer")
    state = engine.new_stream(12)
    generator = torch.Generator().manual_seed(12)
    previous = anchor = None
    since = 0
    engine.noise_drift = 1.0  # the per-call pipeline draws fresh noise every frame
    for _ in range(6):
        engine.generate([(state, cond)])
        out = engine.pipeline(cond, previous, anchor, since, num_inference_steps=engine.steps, generator=generator)
        torch.testing.assert_close(out.latents[0], state.latent, atol=1e-4, rtol=1e-4)
        previous = out.latents
        since = 0 if anchor is None else since + 1
        anchor = previous if anchor is None else anchor
    assert state.anchor_frames == since == 5
