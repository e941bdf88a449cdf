"""bfloat16 where it measured faster: the choice follows the timings, and frames look the same."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch

from models import StreamingEngine, default_model_path
from models.tuning.choice import precision_summary
from models.tuning.frozen import FrozenDecoder, FrozenUNet, TraceMismatch
from models.tuning.precision import BFLOAT16, FAST_DTYPE, FROZEN_BFLOAT16, MixedPrecision
from tests.models.streaming import rollout

pytestmark = pytest.mark.slow  # times and traces the shipped model


def test_bfloat16_is_kept_only_where_it_is_clearly_faster() -> None:
    precision = MixedPrecision(torch.nn.Linear(4, 4))
    seen: list[tuple[torch.dtype, int]] = []

    def run(module: torch.nn.Module, dtype: torch.dtype, batch: int) -> None:
        seen.append((dtype, batch))
        assert next(module.parameters()).dtype == dtype
        module(torch.zeros(batch, 4, dtype=dtype))
        # stand-in costs: bfloat16 takes a quarter of the time from batch 4 on, the same time below (a wide
        # margin, so that sleeps overshooting on a loaded machine cannot turn the choice)
        quartered = dtype == FAST_DTYPE and batch >= 4
        time.sleep(0.02 if quartered else 0.08)

    precision.choose([1, 2, 4, 8], run)
    assert precision.fast_batches == {4, 8}
    assert {dtype for dtype, _ in seen} == {torch.float32, FAST_DTYPE}
    module, dtype = precision.module_for(8)
    assert dtype == FAST_DTYPE and next(module.parameters()).dtype == FAST_DTYPE
    module, dtype = precision.module_for(2)
    assert dtype == torch.float32 and module is precision.full


def test_a_saved_choice_is_adopted_as_it_was_made() -> None:
    precision = MixedPrecision(torch.nn.Linear(4, 4))
    precision.adopt({8: BFLOAT16})
    module, dtype = precision.module_for(8)
    assert dtype == FAST_DTYPE and next(module.parameters()).dtype == FAST_DTYPE
    assert precision.module_for(1) == (precision.full, torch.float32)
    with pytest.raises(ValueError, match="unknown precision variant"):
        precision.adopt({1: "float8"})
    with pytest.raises(ValueError, match="no freeze="):
        precision.adopt({1: FROZEN_BFLOAT16})
    with pytest.raises(ValueError, match="float32 module on the CPU"):
        MixedPrecision(torch.nn.Linear(4, 4).to(torch.bfloat16)).adopt({1: BFLOAT16})
    assert precision.fast_batches == {8}, "a choice that cannot be adopted leaves the last one"


def test_modules_that_are_not_float32_on_the_cpu_are_left_alone() -> None:
    precision = MixedPrecision(torch.nn.Linear(4, 4).to(torch.bfloat16))
    assert not precision.eligible
    precision.choose([1, 8], lambda module, dtype, batch: pytest.fail("nothing to time"))
    assert precision.fast_batches == set()
    with pytest.raises(ValueError):
        precision.use_fast([1])


def test_bfloat16_frames_look_like_float32_frames() -> None:
    """A viewer would not see the switch: an 8-frame rollout stays within a few levels of the float32 one."""
    engine = StreamingEngine.from_pretrained(default_model_path(), steps=1)
    prompt = "snowy mountains at night"
    reference = rollout(engine, seed=3, prompt=prompt, frames=8)
    engine.unet_precision.use_fast([1])
    engine.decoder_precision.use_fast([1])
    assert precision_summary(engine) == {
        "unet_bfloat16_batches": [1],
        "unet_frozen_batches": [],
        "decoder_bfloat16_batches": [1],
        "decoder_frozen_batches": [],
    }
    reduced = rollout(engine, seed=3, prompt=prompt, frames=8)
    for a, b in zip(reference, reduced):
        assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0
    state = engine.new_stream(0)
    engine.generate([(state, engine.encode_prompt(prompt))])
    assert state.latent is not None and state.latent.dtype == torch.float32


def test_the_fastest_variant_is_kept_per_batch_size() -> None:
    precision = MixedPrecision(torch.nn.Linear(4, 4), freeze=FrozenUNet)
    # stand-in costs per (variant, batch): float32 4; bfloat16 wins at 2; frozen graphs win from 4 on
    costs = {"float32": {1: 4, 2: 4, 4: 4}, BFLOAT16: {1: 4, 2: 2, 4: 3}, FROZEN_BFLOAT16: {1: 4, 2: 3, 4: 1.5}}

    def run(module: object, dtype: torch.dtype, batch: int) -> None:
        variant = FROZEN_BFLOAT16 if isinstance(module, FrozenUNet) else BFLOAT16 if dtype == FAST_DTYPE else "float32"
        time.sleep(costs[variant][batch] / 200)  # 5 ms per unit: well above scheduling jitter

    precision.choose([1, 2, 4], run)
    assert precision.choice == {2: BFLOAT16, 4: FROZEN_BFLOAT16}
    assert precision.fast_batches == {2, 4} and precision.frozen_batches == {4}
    assert isinstance(precision.module_for(4)[0], FrozenUNet) and precision.module_for(4)[1] == FAST_DTYPE
    assert precision.module_for(1) == (precision.full, torch.float32)


def test_frozen_unet_matches_the_eager_one_and_traces_once_per_shape() -> None:
    engine = StreamingEngine.from_pretrained(default_model_path(), steps=1)
    eager = torch.nn.Module.to(copy.deepcopy(engine.unet), FAST_DTYPE)
    frozen = FrozenUNet(eager)
    generator = torch.Generator().manual_seed(0)
    channels = engine.unet.config.in_channels
    with torch.inference_mode():
        for batch, timestep in ((2, 999), (2, 499), (3, 999)):
            x = torch.randn(batch, channels, 16, 16, generator=generator).to(FAST_DTYPE)
            context = torch.randn(batch, 32, 384, generator=generator).to(FAST_DTYPE)
            pooled = torch.randn(batch, 384, generator=generator).to(FAST_DTYPE)
            t = torch.tensor(timestep)
            want = eager(x, t, encoder_hidden_states=context, class_labels=pooled).sample.float()
            got = frozen(x, t, encoder_hidden_states=context, class_labels=pooled).sample.float()
            assert got.shape == want.shape
            assert (got - want).abs().mean() < 0.02 * want.abs().mean()
    assert frozen.shapes_traced == 2  # batch 2 twice (another timestep is an input, not a new graph), batch 3


def test_frozen_decoder_matches_the_eager_one() -> None:
    engine = StreamingEngine.from_pretrained(default_model_path(), steps=1)
    eager = torch.nn.Module.to(copy.deepcopy(engine.vae), FAST_DTYPE)
    frozen = FrozenDecoder(eager)
    generator = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        for batch in (2, 3, 2):
            latents = torch.randn(batch, 4, 16, 16, generator=generator).to(FAST_DTYPE)
            latents = latents.contiguous(memory_format=torch.channels_last)
            want = eager.decode(latents).sample.float()
            got = frozen.decode(latents).sample.float()
            assert got.shape == want.shape == (batch, 3, 128, 128)
            assert (got - want).abs().mean() < 0.02 * want.abs().mean()
    assert frozen.shapes_traced == 2


def test_frozen_frames_look_like_float32_frames() -> None:
    engine = StreamingEngine.from_pretrained(default_model_path(), steps=2)
    prompt = "a calm ocean at sunset"
    reference = rollout(engine, seed=5, prompt=prompt, frames=6)
    engine.unet_precision.use_fast([1], frozen=True)
    engine.decoder_precision.use_fast([1], frozen=True)
    summary = precision_summary(engine)
    assert summary["unet_frozen_batches"] == summary["decoder_frozen_batches"] == [1]
    frozen = rollout(engine, seed=5, prompt=prompt, frames=6)
    assert engine.unet_precision.module_for(1)[0].shapes_traced == 1  # the graphs did run
    assert engine.decoder_precision.module_for(1)[0].shapes_traced == 1
    for a, b in zip(reference, frozen):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0


def test_a_model_that_does_not_freeze_faithfully_stays_eager() -> None:
    precision = MixedPrecision(torch.nn.Linear(4, 4), freeze=FrozenUNet)

    def run(module: object, dtype: torch.dtype, batch: int) -> None:
        if isinstance(module, FrozenUNet):
            raise TraceMismatch("differs")
        time.sleep(0.08 if dtype == torch.float32 else 0.02)  # a margin no overshoot on a loaded machine turns

    precision.choose([1, 2], run)
    assert precision.choice == {1: BFLOAT16, 2: BFLOAT16} and precision.frozen_batches == set()
