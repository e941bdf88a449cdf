"""`pixelcast report`: docs/performance.md, generated from the benchmark reports in bench-results/*.json.

One small function per kind of report turns it into a table; `SECTIONS` lists them in page order, with the
command that writes each kind, so that a missing report is named together with how to make it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

Report = dict[str, Any]
Loaded = list[tuple[str, Report]]  # (file name, report)
NOTES = "performance-notes.md"


def _num(value: Any, digits: int = 4) -> str:
    """A figure as a reader wants it: no trailing zeros, thousands separated, "-" when there is none."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"
    return str(value)


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_num(cell) for cell in row) + " |" for row in rows]


def _block(intro: str, header: list[str], rows: list[list[Any]], name: str, report: Report) -> list[str]:
    """A section's lines: its introduction, its table, and the machine the figures came from."""
    return [intro, "", *_table(header, rows), "", machine_line(name, report)]


def _when(date: str | None) -> str:
    try:
        moment = datetime.datetime.fromisoformat(str(date)).astimezone(datetime.timezone.utc)
    except ValueError:
        return str(date)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def machine_line(name: str, report: Report) -> str:
    """Where and when a report was measured: "`stream-1.json`: 2026-12-03 03:06 UTC, AMD EPYC, 2 cores, ..."."""
    facts = report.get("machine", {})
    parts = [_when(facts.get("date")), str(facts.get("cpu_model", "unknown CPU")), f"{facts.get('cpu_count')} cores"]
    if "torch" in facts:
        parts.append(f"torch {facts['torch']} ({facts.get('torch_threads')} threads)")
        parts.append(f"GPU {facts['cuda']}" if facts.get("cuda") else "no GPU")
    return f"- `{name}`: " + ", ".join(parts)


def _latest(loaded: Loaded) -> tuple[str, Report]:
    """The most recently measured report of a kind (by its machine's date, then file name)."""
    return max(loaded, key=lambda item: (str(item[1].get("machine", {}).get("date", "")), item[0]))


def stream_viewers(report: Report) -> int:
    """How many viewers a stream run asked for: admitted ones plus those refused to the end."""
    if isinstance(report.get("viewers"), int):
        return int(report["viewers"])
    return int(report.get("admitted", 0)) + int(report.get("refused_in_the_end", 0))


def _stream_target(report: Report) -> tuple[str, str]:
    """The design's target for this many viewers, and whether the run met it ("" where none applies)."""
    viewers, admitted = stream_viewers(report), report.get("admitted", 0)
    steer, first = report.get("steer_visible_s"), report.get("max_time_to_first_frame_s")
    common = first is not None and first <= 1.0 and steer is not None and steer <= 0.5
    if viewers == 1:
        ok = admitted == 1 and round(report.get("min_fps", 0)) >= 24 and report.get("total_stalls") == 0 and common
        return "24 fps, 0 stalls, first frame <= 1 s, steer <= 0.5 s", _met(ok)
    if viewers == 4:
        ok = admitted == 4 and report.get("min_fps", 0) >= 12 and common
        return "all 4 at >= 12 fps, first frame <= 1 s, steer <= 0.5 s", _met(ok)
    return "none (past the design's 4 viewers)", ""


def _workers(report: Report) -> int:
    """Workers behind nginx in a stream run (0: one server, viewers straight to it)."""
    return int(report.get("workers_behind_nginx") or 0)


def stream_section(loaded: Loaded) -> list[str]:
    """One row per `bench stream` report of one server, by viewer count."""
    rows = []
    ordered = sorted(
        [item for item in loaded if not _workers(item[1])], key=lambda item: (stream_viewers(item[1]), item[0])
    )
    if not ordered:
        return []
    for name, r in ordered:
        target, met = _stream_target(r)
        rows.append([
            stream_viewers(r), r.get("admitted"), r.get("refusals_503_before_admission"), r.get("min_fps"),
            r.get("total_stalls"), r.get("max_time_to_first_frame_s"), r.get("steer_visible_s"),
            r.get("server_cpu_cores"), target, met, f"`{name}`",
        ])
    header = [
        "viewers", "admitted", "503s on the way", "min fps", "stalls", "max first frame (s)", "steer visible (s)",
        "server CPU (cores)", "target", "met", "report",
    ]
    seconds = sorted({_num(r.get("seconds")) for _, r in ordered})
    intro = f"Real WebRTC viewers over loopback, {', '.join(seconds)} s measured per run (`pixelcast bench stream`)."
    return [intro, "", *_table(header, rows), "", *(machine_line(name, r) for name, r in ordered)]


def scale_out_section(loaded: Loaded) -> list[str]:
    """One row per `bench stream --workers N` report: viewers through nginx to N workers on a Redis Cluster."""
    ordered = sorted([item for item in loaded if _workers(item[1])], key=lambda item: (_workers(item[1]), item[0]))
    if not ordered:
        return []
    rows = []
    for name, r in ordered:
        by_worker = ", ".join(f"{w} {n}" for w, n in sorted((r.get("admitted_by_worker") or {}).items()))
        rows.append([
            _workers(r), stream_viewers(r), r.get("admitted"), by_worker, r.get("refusals_503_before_admission"),
            r.get("min_fps"), r.get("total_stalls"), r.get("max_time_to_first_frame_s"), r.get("server_cpu_cores"),
            f"`{name}`",
        ])
    header = [
        "workers", "viewers", "admitted", "by worker", "503s on the way", "min fps", "stalls", "max first frame (s)",
        "workers' CPU (cores)", "report",
    ]
    intro = (
        "Real WebRTC viewers through nginx to workers on a three-master Redis Cluster, all on this one machine "
        "(`pixelcast bench stream --workers N`). The workers share its cores, so two admit no more than one: "
        "what these runs show is that routing spreads viewers and keeps them in real time; capacity multiplies "
        "with machines."
    )
    return [intro, "", *_table(header, rows), "", *(machine_line(name, r) for name, r in ordered)]


def engine_section(loaded: Loaded) -> list[str]:
    """Frames/s per contender and batch, against the plain diffusers pipeline per frame."""
    name, r = _latest(loaded)
    rows = [
        [contender, result.get("batch"), result.get("frames_per_second"), result.get("frame_p50_ms"),
         f"x{_num(result['ratio_vs_naive'])}" if result.get("ratio_vs_naive") is not None else "-"]
        for contender, result in r.get("results", {}).items()
    ]
    side = r.get("streamdiffusion") or {}
    other = "ran" if side.get("ran") else f"not run: {side.get('reason', 'no reason given')}"
    return [
        f"Model `{r.get('model')}` on {r.get('device')} ({r.get('dtype')}), {r.get('resolution')}, "
        f"{r.get('steps')} step(s) (`pixelcast bench engine`).",
        "",
        *_table(["contender", "batch", "frames/s", "p50 ms per frame", "vs naive"], rows),
        "",
        f"`streamdiffusion` side by side: {other}.",
        "",
        machine_line(name, r),
    ]


def redis_section(loaded: Loaded) -> list[str]:
    """Feedback ingest rate and latency against the design's 20k events/s with p99 <= 5 ms."""
    name, r = _latest(loaded)
    targets = r.get("targets", {"events_per_second": 20_000, "p99_ms": 5.0})
    latency, checks = r.get("latency_ms", {}), r.get("checks", {})
    rate, p99 = r.get("events_per_second", 0), latency.get("p99", float("inf"))
    met = rate >= targets["events_per_second"] and p99 <= targets["p99_ms"]
    target = f">= {_num(targets['events_per_second'])} events/s, p99 <= {_num(targets['p99_ms'])} ms"
    row = [
        r.get("writers"), r.get("events"), rate, latency.get("p50"), p99, checks.get("exact_counts"),
        checks.get("replay_changed_profiles"), target, _met(met),
    ]
    header = [
        "writers", "events", "events/s", "p50 ms", "p99 ms", "exact counts", "replay changed profiles", "target",
        "met",
    ]
    intro = f"Redis {r.get('redis', {}).get('url')} {r.get('redis', {}).get('version')} (`pixelcast bench redis`)."
    return _block(intro, header, [row], name, r)


def grounding_section(loaded: Loaded) -> list[str]:
    """How long grounding a steer takes per contender, p50 against the shipped small batches."""
    name, r = _latest(loaded)
    results = r.get("results", {})
    base = results.get("small_batches", {}).get("p50_ms")
    rows = [
        [contender, t.get("p50_ms"), t.get("p95_ms"), f"x{_num(t['p50_ms'] / base, 2)}" if base else "-"]
        for contender, t in results.items()
    ]
    intro = (
        f"{r.get('steers')} steers, {r.get('rounds')} rounds each (`pixelcast bench grounding`); "
        f"every contender read the same prompts: {_num(r.get('same_prompts'))}."
    )
    return _block(intro, ["contender", "p50 ms", "p95 ms", "p50 vs small batches"], rows, name, r)


def steer_readers_section(loaded: Loaded) -> list[str]:
    """Each steer-reading model's F1 per attribute, and which one the server reads it with."""
    name, r = _latest(loaded)
    accuracy, server = r.get("accuracy", {}), r.get("server_by_attribute", {})
    rows = [
        [attr, *(accuracy.get(model, {}).get(attr, {}).get("f1") for model in ("grounder", "similarity", "server")),
         server.get(attr), r.get("best_by_attribute", {}).get(attr)]
        for attr in server
    ]  # fmt: skip
    intro = f"{r.get('steers')} steers (`pixelcast bench steer-readers`); F1 of the wishes read against those stated."
    header = ["attribute", "grounder F1", "similarity F1", "server F1", "server reads with", "better"]
    return _block(intro, header, rows, name, r)


def churn_section(loaded: Loaded) -> list[str]:
    """What N connect/stream/disconnect cycles left behind, each against its bound."""
    name, r = _latest(loaded)
    growth, bounds = r.get("growth", {}), r.get("bounds", {})
    rows = [
        [key, growth.get(key), bound, _met(growth.get(key, float("inf")) <= bound)]
        for key, bound in bounds.items()
    ]
    intro = (
        f"{r.get('cycles')} cycles, every third viewer leaving without DELETE (`pixelcast bench churn`); "
        f"within all bounds: {_num(r.get('within_bounds'))}; anonymous viewers added (kept, with a TTL): "
        f"{_num(r.get('anonymous_viewers_added'))}. Growth is measured from after the warm-up cycles; keys "
        f"without a TTL and sessions are counts at the end.{_rss_settling(r)}"
    )
    return _block(intro, ["measure", f"growth after {r.get('cycles')} cycles", "bound", "within"], rows, name, r)


def _rss_settling(report: Report) -> str:
    """How RSS grew along the run, where the report sampled it."""
    samples = report.get("rss_mib_by_cycle")
    if not samples:
        return ""
    path = ", ".join(f"{_num(mib)} after {cycle}" for cycle, mib in samples)
    late = _num(report.get("rss_mib_per_100_cycles_second_half"))
    return f" RSS along the run (MiB after N cycles): {path}; over the second half {late} MiB per 100 cycles."


def eval_model_section(loaded: Loaded) -> list[str]:
    """Every target of `pixelcast eval model`, with its value and whether it passed."""
    name, r = _latest(loaded)
    checks = r.get("targets", {})
    notes = any("note" in check for check in checks.values())
    rows = [
        [target, check.get("value"), check.get("target"), _met(bool(check.get("pass")))]
        + ([check.get("note", "")] if notes else [])
        for target, check in checks.items()
    ]
    quick = " (quick settings: a smoke run, not the full evaluation)" if r.get("quick") else ""
    intro = f"Model `{r.get('model')}`{quick}; all targets pass: {_num(r.get('all_targets_pass'))}."
    return _block(intro, ["target", "value", "bound", "pass"] + (["note"] if notes else []), rows, name, r)


class Section(NamedTuple):
    """A kind of report: its key, the page's heading for it, its table, and the commands that write it."""

    kind: str
    title: str
    render: Callable[[Loaded], list[str]]
    commands: tuple[str, ...]


SECTIONS = (
    Section("stream", "Streams to real viewers", stream_section, (
        "pixelcast bench stream --viewers 1 --seconds 30 --json bench-results/stream-1.json",
        "pixelcast bench stream --viewers 4 --seconds 30 --json bench-results/stream-4.json",
        "pixelcast bench stream --viewers 10 --seconds 30 --json bench-results/stream-10.json",
    )),
    Section("stream", "Workers behind nginx", scale_out_section, (
        "pixelcast bench stream --viewers 10 --seconds 20 --workers 1 --json bench-results/stream-nginx-1.json",
        "pixelcast bench stream --viewers 10 --seconds 20 --workers 2 --json bench-results/stream-nginx-2.json",
    )),
    Section("engine", "Engine against the plain pipeline", engine_section, (
        "pixelcast bench engine --seconds 20 --steps 1 --batches 1 4 8 --json bench-results/engine.json",
    )),
    Section("redis", "Redis feedback ingest", redis_section, (
        "pixelcast bench redis --writers 64 --events 40000 --json bench-results/redis.json",
    )),
    Section("grounding", "Grounding a steer", grounding_section, (
        "pixelcast bench grounding --json bench-results/grounding.json",
    )),
    Section("steer_readers", "Reading a steer", steer_readers_section, (
        "pixelcast bench steer-readers --json bench-results/steer-readers.json",
    )),
    Section("churn", "Connect/disconnect churn", churn_section, (
        "pixelcast bench churn --cycles 200 --json bench-results/churn-200.json",
    )),
    Section("eval-model", "Model evaluation", eval_model_section, (
        "pixelcast eval model --json bench-results/eval-model.json",
    )),
)

DESIGN_TARGETS = (
    "1 viewer at 24 fps with 0 stalls; 4 viewers at >= 12 fps each; time to first frame <= 1 s; "
    "a steer visible within 0.5 s; Redis feedback ingest >= 20k events/s with p99 <= 5 ms."
)


def _kind(report: Report) -> str | None:
    if "benchmark" in report:
        return str(report["benchmark"])
    if "evaluation" in report:
        return f"eval-{report['evaluation']}"
    return None


def load_reports(results: Path) -> dict[str, Loaded]:
    """The reports under ``results`` by kind; a file that is not a whole JSON object (say, one being written
    right now) is skipped with a warning on stderr."""
    found: dict[str, Loaded] = {}
    for path in sorted(results.glob("*.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            print(f"pixelcast report: warning: skipping {path}: not a complete JSON report ({error})", file=sys.stderr)
            continue
        kind = _kind(report) if isinstance(report, dict) else None
        if kind is not None:
            found.setdefault(kind, []).append((path.name, report))
    return found


def render(reports: dict[str, Loaded], results: str = "bench-results") -> str:
    """The whole page, from the reports by kind; ``results`` is how the page names their folder."""
    lines = [
        "# Performance figures",
        "",
        f"Generated by `pixelcast report` from `{results}/*.json`; do not edit by hand (run `make report`).",
        "",
        f"Targets from the design: {DESIGN_TARGETS}",
    ]
    missing: list[Section] = []
    for section in SECTIONS:
        loaded = reports.get(section.kind)
        if not loaded:
            missing.append(section)
            continue
        try:
            body = section.render(loaded)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as error:
            names = ", ".join(name for name, _ in loaded)
            print(f"pixelcast report: warning: cannot summarise {names}: {error!r}", file=sys.stderr)
            missing.append(section)
            continue
        if not body:  # reports of this kind, but none that this section shows
            missing.append(section)
            continue
        lines += ["", f"## {section.title}", "", *body]
    if missing:
        lines += ["", "## Missing reports", "", f"No readable report in `{results}/` for these; the commands that "
                  "write them (`make bench` runs them all but the model evaluation):", ""]
        for section in missing:
            lines += [f"- {section.title} (`{section.kind}`): " + "; ".join(f"`{c}`" for c in section.commands)]
    lines += ["", f"What limits these figures, and their history: [Performance notes]({NOTES}).", ""]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `pixelcast report`."""
    parser.add_argument("--results", type=Path, default=Path("bench-results"), help="reports (default bench-results)")
    parser.add_argument(
        "--out", type=Path, default=Path("docs/performance.md"), help="page to write (default docs/performance.md)"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the page on disk differs from what would be generated"
    )


def main(args: argparse.Namespace) -> int:
    """Entry point of `pixelcast report`: write the page, or with --check say whether it is up to date."""
    reports = load_reports(args.results)
    page = render(reports, str(args.results).rstrip("/"))
    if args.check:
        current = args.out.read_text() if args.out.is_file() else None
        if current != page:
            print(f"{args.out} is stale: run `pixelcast report` (or `make report`)")
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page)
    shown = ", ".join(f"{kind} x{len(loaded)}" for kind, loaded in reports.items())
    print(f"wrote {args.out} from {shown or 'no reports'}")
    return 0
