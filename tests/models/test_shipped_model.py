"""The shipped weights, loaded offline: what a viewer asks for is what the probe sees in the frames."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from models import StreamingEngine, default_model_path
from models.evaluation.probe import AttributeProbe
from models.evaluation.sections import EvalSettings, eval_specs, hold
from models.world import SceneSpec, describe, render_clip

pytestmark = pytest.mark.slow  # streams the shipped model

SETTLE_FRAMES = 24  # one second of stream before looking
LOOK_FRAMES = 6


@pytest.fixture(scope="module")
def engine() -> StreamingEngine:
    return StreamingEngine.from_pretrained(default_model_path(), steps=1)


@pytest.fixture(scope="module")
def probe() -> AttributeProbe:
    shipped = default_model_path() / "probe"
    if not shipped.is_dir():
        pytest.fail("the attribute probe must ship with the model in models/weights/probe")
    return AttributeProbe.load(shipped)


def _stream(engine: StreamingEngine, prompts: list[str], frames: int, states: list | None = None) -> tuple[list, list]:
    states = states or [engine.new_stream(seed) for seed in range(len(prompts))]
    conditions = [engine.encode_prompt(p) for p in prompts]
    out: list = [[] for _ in prompts]
    for _ in range(frames):
        for i, frame in enumerate(engine.generate(list(zip(states, conditions)))):
            out[i].append(frame)
    return states, out


def _majority(probe: AttributeProbe, frames: list) -> dict[str, str]:
    predicted = probe.predict(frames[-LOOK_FRAMES:])
    return {attr: Counter(values).most_common(1)[0][0] for attr, values in predicted.items()}


def test_the_probe_sees_the_asked_for_subject_and_palette(engine: StreamingEngine, probe: AttributeProbe) -> None:
    specs = [
        SceneSpec("ocean", "sunset"),
        SceneSpec("city", "night"),
        SceneSpec("mountains", "noon"),
        SceneSpec("desert", "dawn"),
        SceneSpec("forest", "dusk"),
        SceneSpec("volcano", "neon"),
    ]
    _, streams = _stream(engine, [describe(s) for s in specs], SETTLE_FRAMES)
    seen = [_majority(probe, frames) for frames in streams]
    hits = sum(s.subject == p["subject"] and s.palette == p["palette"] for s, p in zip(specs, seen))
    assert hits >= 5, f"asked for {[(s.subject, s.palette) for s in specs]}, the probe saw {seen}"


def test_a_steer_to_another_subject_changes_what_the_probe_sees(engine: StreamingEngine, probe: AttributeProbe) -> None:
    before, after = "a calm ocean at sunset", "a desert at noon"
    states, streams = _stream(engine, [before], SETTLE_FRAMES)
    assert _majority(probe, streams[0])["subject"] == "ocean"
    _, streams = _stream(engine, [after], SETTLE_FRAMES, states)
    assert _majority(probe, streams[0])["subject"] == "desert", "the stream did not follow the steer"


def _hits(engine: StreamingEngine, probe: AttributeProbe, cases: list[tuple[str, SceneSpec]]) -> tuple[int, list]:
    """How many of the streams for these texts the probe sees as their scene, and what it saw in each."""
    _, streams = _stream(engine, [text for text, _ in cases], SETTLE_FRAMES)
    seen = [_majority(probe, frames) for frames in streams]
    return sum(s.subject == p["subject"] and s.palette == p["palette"] for (_, s), p in zip(cases, seen)), seen


def test_paraphrases_show_the_scene_they_name(engine: StreamingEngine, probe: AttributeProbe) -> None:
    """Wordings no training caption has show their scene; words only the grounder's dictionary reads need it."""
    cases = [
        ("aerial view of a mist-shrouded northwoods at 2 am", SceneSpec("forest", "night")),
        ("barren dunes under the moon", SceneSpec("desert", "night")),
        ("a glowing lava field scene under a bright sun", SceneSpec("volcano", "noon")),
        ("A moody cactus desert at eventide in heavy snow", SceneSpec("desert", "dusk")),
        ("close-up of a modern city under an inky blue sky", SceneSpec("city", "night")),
        ("ambient loop of a waterfall between rock walls after the sun has set", SceneSpec("waterfall", "dusk")),
    ]
    grounded, seen = _hits(engine, probe, cases)
    # two thirds: the evaluation's held-out figure (768 streams) is the measure; this guards the behaviour
    assert grounded >= 4, f"asked for {[(s.subject, s.palette) for _, s in cases]}, the probe saw {seen}"

    # MiniLM does not tie these words to the world's scenes; the grounder's WordNet table does
    rare_words = [
        ("a cataract at night", SceneSpec("waterfall", "night")),
        ("the Kalahari at noon", SceneSpec("desert", "noon")),
        ("a cataract in the gloaming", SceneSpec("waterfall", "dusk")),
        ("a tarn-fed cataract at high noon", SceneSpec("waterfall", "noon")),
    ]
    with_grounder, seen = _hits(engine, probe, rare_words)
    engine.prompts.grounding = False
    try:
        without, _ = _hits(engine, probe, rare_words)
    finally:
        engine.prompts.grounding = True
    assert with_grounder >= 3, f"asked for {[(s.subject, s.palette) for _, s in rare_words]}, the probe saw {seen}"
    assert with_grounder > without, "the denoiser alone read the dictionary's words as well: the grounder added nothing"


def test_a_stream_carries_a_frame_of_its_scene_on(engine: StreamingEngine) -> None:
    """Streams that start from a frame of the world keep its layout a second on at least as well as a still
    picture of it would.

    On these 8 streams the still picture scores 29.0 dB of layout (8x8-pixel cell means) against the world
    a second later and the shipped model 31.8 (each frame drawn from the start moved by the camera its
    caption names); before the camera reader 26.6, and before the anchor, which let a stream drift to its
    subject's pinned picture, 23.9.
    """
    settings = EvalSettings(hold_streams=8, hold_seconds=(1.0,))
    after = hold(engine, eval_specs(8, seed=3), settings, progress=False)["after"]["1s"]
    assert after["generated_coarse_psnr_db"] >= after["still_picture_coarse_psnr_db"], after


def _slide(earlier: np.ndarray, later: np.ndarray, widest: int = 24) -> int:
    """Pixels the picture slid right from `earlier` to `later` (negative: left), as the best-matching shift."""
    width = earlier.shape[1]

    def error(shift: int) -> float:
        a = earlier[:, max(0, -shift) : width - max(0, shift)].astype(float)
        b = later[:, max(0, shift) : width - max(0, -shift)].astype(float)
        return float(((a - b) ** 2).mean())

    return min(range(-widest, widest + 1), key=error)


def test_a_pan_slides_the_picture_the_way_the_world_pans(engine: StreamingEngine) -> None:
    """A viewer who asks for the camera to pan sees the picture slide the way the world's own pans slide it,
    and a still camera's picture stays put."""
    slides = {}
    for camera in ("pan_left", "pan_right", "static"):
        spec = SceneSpec("mountains", "sunset", "clear", "lively", camera)
        _, (frames,) = _stream(engine, [describe(spec)], SETTLE_FRAMES + 1)
        world = render_clip(spec, 7, SETTLE_FRAMES)
        slides[camera] = (_slide(frames[1], frames[SETTLE_FRAMES]), _slide(world[0], world[SETTLE_FRAMES - 1]))
    for camera in ("pan_left", "pan_right"):
        stream, world = slides[camera]
        assert world != 0 and stream * world > 0, slides
    assert slides["static"][0] == 0, slides
    reader = engine.camera
    assert reader is not None
    still = reader.motion(engine.encode_prompt("mountains at sunset")[None])
    assert float(still.pan.abs().max()) == 0.0 and float(still.zoom.abs().max()) == 0.0
