"""`pixelcast bench make-sd` and `pixelcast bench engine` on a tiny random-weight SD-layout folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.loading import TEXT_TO_IMAGE, check_pipeline_folder
from streamer.cli import main as cli_main

pytestmark = pytest.mark.slow  # times engines


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench") / "tiny-sd"
    assert cli_main(["bench", "make-sd", "--size", "tiny", "--dtype", "float32", "--out", str(folder)]) == 0
    return folder


def test_make_sd_writes_a_loadable_folder_and_refuses_to_overwrite(tiny_sd: Path) -> None:
    assert check_pipeline_folder(tiny_sd) == TEXT_TO_IMAGE
    unet = json.loads((tiny_sd / "unet" / "config.json").read_text())
    assert unet["block_out_channels"] == [32, 64]
    with pytest.raises(SystemExit, match="not empty"):
        cli_main(["bench", "make-sd", "--size", "tiny", "--out", str(tiny_sd)])


def test_bench_engine_compares_engine_and_plain_pipeline_on_any_folder(tiny_sd: Path, tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    argv = ["bench", "engine", "--model", str(tiny_sd), "--device", "cpu", "--seconds", "3", "--batches", "1", "2"]
    argv += ["--json", str(out)]
    assert cli_main(argv) == 0
    report = json.loads(out.read_text())
    assert (report["resolution"], report["device"], report["steps"]) == ("32x32", "cpu", 1)
    results = report["results"]
    assert {"naive_pipeline_per_frame", "engine_batch_1", "engine_batch_2", "h264_encode"} <= set(results)
    for name, result in results.items():
        assert result["frames"] > 0 and result["frames_per_second"] > 0, name
        if name.startswith("engine_"):
            naive = results["naive_pipeline_per_frame"]["frames_per_second"]
            assert result["ratio_vs_naive"] == pytest.approx(result["frames_per_second"] / naive, rel=0.01)
            assert 0.0 < result["model_share_of_frame_time"] < 1.0
    side = report["streamdiffusion"]
    assert side["ran"] is False and "CUDA" in side["reason"]
