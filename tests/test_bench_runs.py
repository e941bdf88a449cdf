"""`make bench`'s stream, Redis and grounding benchmarks run end to end and report what a reader of their JSON needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.cli import main as cli_main

pytestmark = pytest.mark.slow  # runs benchmarks against a server


def test_bench_stream_reports_every_viewer(tmp_path: Path) -> None:
    out = tmp_path / "stream.json"
    assert cli_main(["bench", "stream", "--viewers", "2", "--seconds", "4", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["admitted"] == 2 and len(report["viewers"]) == 2
    assert {viewer["prompt"] for viewer in report["viewers"]} == {"a desert at noon", "a calm ocean at sunset"}
    for viewer in report["viewers"]:  # real frames reached each aiortc client, decoded
        assert viewer["frames"] >= 2
        assert all(isinstance(viewer[key], float) for key in ("fps", "time_to_first_frame_s"))
    assert report["min_fps"] == min(viewer["fps"] for viewer in report["viewers"])
    assert all(isinstance(report[key], float) for key in ("server_startup_s", "server_cpu_cores"))
    assert "steer_visible_s" in report and isinstance(report["server_decisions"], list)


def test_bench_redis_counts_exactly_and_replays_to_no_effect(tmp_path: Path) -> None:
    out = tmp_path / "redis.json"
    assert cli_main(["bench", "redis", "--writers", "8", "--events", "800", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["events"] == 800 and report["events_per_second"] > 0
    checks = report["checks"]
    assert checks["exact_counts"] is True and checks["problems"] == []
    assert checks["replay_applied"] == 0 and checks["replay_changed_profiles"] is False


def test_bench_grounding_reads_every_steer_alike_batched_or_cached(tmp_path: Path) -> None:
    out = tmp_path / "grounding.json"
    assert cli_main(["bench", "grounding", "--rounds", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    # chunking and caching change the speed, never what the grounder reads
    assert report["same_prompts"] is True
    assert max(report["word_runs_per_prompt"]) > 20, "a long steer has dozens of word runs"
    for contender in ("small_batches", "one_batch", "cached_runs"):
        assert report["results"][contender]["p50_ms"] > 0
    expected = report["results"]["one_batch"]["p50_ms"] / report["results"]["small_batches"]["p50_ms"]
    assert report["ratio_p50_one_batch_vs_small_batches"] == pytest.approx(expected, rel=0.01)
    expected = report["results"]["small_batches"]["p50_ms"] / report["results"]["cached_runs"]["p50_ms"]
    assert report["ratio_p50_small_batches_vs_cached_runs"] == pytest.approx(expected, rel=0.01)


def test_bench_stream_says_why_when_the_steering_viewer_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import httpx

    from benchmarks import stream

    real_start = stream.ViewerProbe.start

    async def start_then_leave(probe: stream.ViewerProbe, patience: float = stream.ADMISSION_PATIENCE_S) -> bool:
        admitted = await real_start(probe, patience)
        async with httpx.AsyncClient(base_url=probe.client.base_url) as http:  # the session ends on the server
            assert (await http.delete(probe.client.location)).status_code in (200, 204)
        return admitted

    monkeypatch.setattr(stream.ViewerProbe, "start", start_then_leave)
    out = tmp_path / "stream.json"
    assert cli_main(["bench", "stream", "--viewers", "1", "--seconds", "2", "--json", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "the steering viewer's control channel is closed" in printed and "the server's log ends" in printed
    assert not out.exists()
