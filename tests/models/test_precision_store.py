"""The precision choice is timed once per machine and model, then reused by later server starts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from models import StreamingEngine, default_model_path
from models.tuning.choice import precision_choice
from models.tuning.store import PRECISION_FILE, load_or_choose_precision, machine_key

pytestmark = pytest.mark.slow  # times the shipped model

BATCHES = [1]


@pytest.fixture(scope="module")
def engine() -> StreamingEngine:
    return StreamingEngine.from_pretrained(default_model_path(), steps=1)


def _fresh_engine() -> StreamingEngine:
    return StreamingEngine.from_pretrained(default_model_path(), steps=1)


def test_a_second_start_reuses_what_the_first_measured(
    engine: StreamingEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="models.tuning.store")
    precision, reused = load_or_choose_precision(engine, default_model_path(), BATCHES, tmp_path)
    assert not reused
    # the log says why start-up pauses, and that later starts will not
    said = f"timing float32 against bfloat16 at batch size 1; the choice is saved in {tmp_path / PRECISION_FILE}"
    assert said in caplog.text
    saved = json.loads((tmp_path / PRECISION_FILE).read_text())
    assert saved["key"] == machine_key(engine, default_model_path(), BATCHES)
    assert saved["choice"] == precision_choice(engine)
    # a saved choice timing would not make here (eager bfloat16 at batch 1 loses to frozen graphs or
    # to float32 on every CPU measured), so the next start shows whether it was reused or re-timed
    saved["choice"] = {"unet": {"1": "bfloat16"}, "decoder": {}}
    (tmp_path / PRECISION_FILE).write_text(json.dumps(saved))
    later = _fresh_engine()
    caplog.clear()
    precision, reused = load_or_choose_precision(later, default_model_path(), BATCHES, tmp_path)
    assert reused
    assert "reusing the precision choice saved in" in caplog.text and "timing" not in caplog.text
    assert precision["unet_bfloat16_batches"] == [1] and precision["unet_frozen_batches"] == []
    assert precision["decoder_bfloat16_batches"] == []
    [frame] = later.generate([(later.new_stream(0), later.encode_prompt("a forest at night"))])
    assert frame.shape[-1] == 3 and frame.std() > 5, "the adopted bfloat16 UNet makes pictures"


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda record: record | {"key": {**record["key"], "batches": [1, 2]}}, id="other-batch-sizes"),
        pytest.param(lambda record: record | {"key": {**record["key"], "torch": "0.0"}}, id="other-torch"),
        pytest.param(
            lambda record: record | {"choice": {"unet": {"1": "float8"}, "decoder": {}}}, id="unknown-variant"
        ),
        pytest.param(lambda record: "not json at all", id="not-json"),
    ],
)
def test_a_saved_choice_for_something_else_is_timed_again(
    engine: StreamingEngine, tmp_path: Path, spoil: object
) -> None:
    load_or_choose_precision(engine, default_model_path(), BATCHES, tmp_path)
    path = tmp_path / PRECISION_FILE
    spoiled = spoil(json.loads(path.read_text()))  # type: ignore[operator]
    path.write_text(spoiled if isinstance(spoiled, str) else json.dumps(spoiled))
    _, reused = load_or_choose_precision(engine, default_model_path(), BATCHES, tmp_path)
    assert not reused
    assert json.loads(path.read_text())["key"] == machine_key(engine, default_model_path(), BATCHES), "saved anew"


def test_retime_measures_even_when_the_saved_choice_fits(engine: StreamingEngine, tmp_path: Path) -> None:
    load_or_choose_precision(engine, default_model_path(), BATCHES, tmp_path)
    _, reused = load_or_choose_precision(engine, default_model_path(), BATCHES, tmp_path, retime=True)
    assert not reused
