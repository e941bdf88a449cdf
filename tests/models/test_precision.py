"""bfloat16 where it measured faster: the choice follows the timings, and frames look the same."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from models import StreamingEngine, default_model_path
from models.precision import FAST_DTYPE, MixedPrecision
from tests.models.streaming import rollout


def test_bfloat16_is_kept_only_where_it_is_clearly_faster() -> None:
    precision = MixedPrecision(torch.nn.Linear(4, 4))
    seen: list[tuple[torch.dtype, int]] = []

    def run(module: torch.nn.Module, dtype: torch.dtype, batch: int) -> None:
        seen.append((dtype, batch))
        assert next(module.parameters()).dtype == dtype
        module(torch.zeros(batch, 4, dtype=dtype))
        # stand-in costs: bfloat16 takes half the time from batch 4 on, the same time below
        halved = dtype == FAST_DTYPE and batch >= 4
        time.sleep(0.002 if halved else 0.004)

    precision.choose([1, 2, 4, 8], run)
    assert precision.fast_batches == {4, 8}
    assert {dtype for dtype, _ in seen} == {torch.float32, FAST_DTYPE}
    module, dtype = precision.module_for(8)
    assert dtype == FAST_DTYPE and next(module.parameters()).dtype == FAST_DTYPE
    module, dtype = precision.module_for(2)
    assert dtype == torch.float32 and module is precision.full


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
    engine._unet_precision.use_fast([1])
    engine._vae_precision.use_fast([1])
    assert engine.precision == {"unet_bfloat16_batches": [1], "decoder_bfloat16_batches": [1]}
    reduced = rollout(engine, seed=3, prompt=prompt, frames=8)
    for a, b in zip(reference, reduced):
        assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0
    state = engine.new_stream(0)
    engine.generate([(state, engine.encode_prompt(prompt))])
    assert state.latent is not None and state.latent.dtype == torch.float32
