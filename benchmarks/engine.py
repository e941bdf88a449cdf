"""`pixelcast bench engine`: the streaming engine against calling the plain diffusers pipeline per frame.

All contenders run in one process, in interleaved rounds, so that they share whatever else the
machine is doing; the report gives frames/s, frame-time percentiles and ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .report import machine, percentiles_ms, shown_path, write_json

PROMPTS = (
    "a calm ocean at sunset with gentle waves",
    "snowy mountains at night",
    "a busy city skyline in the rain",
    "a quiet forest at dawn in fog",
)
ROUND_SECONDS = 0.5


class _Contender:
    """One way of producing frames, timed per call.

    `finish` completes work a call left running (a decode on the second stage), timed with the last
    call; `threads` sets torch's threads for this contender's rounds.
    """

    def __init__(
        self, name: str, frames_per_call: int, call: Any, *, finish: Any = None, threads: int | None = None
    ) -> None:
        self.name = name
        self.frames_per_call = frames_per_call
        self.call = call
        self.finish = finish
        self.threads = threads
        self.call_seconds: list[float] = []

    def run_for(self, seconds: float) -> None:
        import torch

        saved = torch.get_num_threads()
        torch.set_num_threads(self.threads or saved)
        try:
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                self.call()
                self.call_seconds.append(time.perf_counter() - started)
            if self.finish is not None:
                started = time.perf_counter()
                self.finish()
                self.call_seconds[-1] += time.perf_counter() - started
        finally:
            torch.set_num_threads(saved)

    def summary(self) -> dict[str, Any]:
        total = sum(self.call_seconds)
        frames = self.frames_per_call * len(self.call_seconds)
        per_frame = [s / self.frames_per_call for s in self.call_seconds]
        return {
            "frames": frames,
            "seconds": round(total, 3),
            "frames_per_second": round(frames / total, 2) if total else 0.0,
            "batch": self.frames_per_call,
            **{f"frame_{k}": v for k, v in percentiles_ms(per_frame).items()},
        }


def _naive_call(model: Path, steps: int, device: str, dtype: Any, embeds: Any) -> Any:
    """One frame from the folder's own diffusers pipeline per call, with the engine's weights, steps and size."""
    import torch

    from models.loading import PIXELCAST, load_pipeline

    pipeline, kind = load_pipeline(model, device=device, dtype=dtype)
    generator = torch.Generator(device).manual_seed(0)
    if kind != PIXELCAST:  # e.g. SD-turbo: txt2img without guidance, as the engine runs it
        prompt = embeds[0][None].to(dtype)

        def text_to_image() -> None:
            pipeline(
                prompt_embeds=prompt,
                num_inference_steps=steps,
                guidance_scale=0.0,
                generator=generator,
                output_type="np",
            )

        return text_to_image
    previous: list[Any] = [None]
    anchor: list[Any] = [None]  # the stream's first frame, once made
    since = [0]  # frames made after it (a camera moves the anchor by this many frames' motion)

    def next_frame() -> None:
        out = pipeline(
            embeds[0],
            previous_latents=previous[0],
            anchor_latents=anchor[0],
            frames_since_anchor=since[0],
            num_inference_steps=steps,
            generator=generator,
        )
        previous[0] = out.latents
        since[0] = 0 if anchor[0] is None else since[0] + 1
        anchor[0] = out.latents if anchor[0] is None else anchor[0]

    return next_frame


def _contenders(model: Path, steps: int, batches: list[int], device: str, dtype: Any) -> tuple[list[_Contender], Any]:
    from models import StreamingEngine
    from models.tuning.choice import choose_precision
    from models.tuning.speed import warm_up
    from streamer.encoding import VideoEncoder

    engine = StreamingEngine.from_pretrained(model, steps=steps, device=device, dtype=dtype)
    warm_up(engine)
    if device == "cpu":
        choose_precision(engine, range(1, max(batches) + 1))  # as the server does at start-up
    embeds = [engine.encode_prompt(p) for p in PROMPTS]
    contenders = [_Contender("naive_pipeline_per_frame", 1, _naive_call(model, steps, device, dtype, embeds))]
    for batch in batches:
        states = [engine.new_stream(seed) for seed in range(batch)]
        requests = [(state, embeds[i % len(embeds)]) for i, state in enumerate(states)]
        contenders.append(_Contender(f"engine_batch_{batch}", batch, lambda r=requests: engine.generate(r)))
    for batch in batches:
        contenders.append(_pipelined(engine, batch, embeds))

    encoder = VideoEncoder("h264", engine.width, engine.height, fps=24)
    frame = engine.generate([(engine.new_stream(99), embeds[0])])[0]
    pts = [0]

    def encode_call() -> None:
        encoder.encode(frame, pts[0], keyframe=pts[0] % (24 * 3750) == 0)
        pts[0] += 3750

    contenders.append(_Contender("h264_encode", 1, encode_call))
    return contenders, engine


def _pipelined(engine: Any, batch: int, embeds: list[Any]) -> _Contender:
    """The engine as the server runs it, on a `TwoStageRunner`: each batch decodes on a second thread
    while the next one denoises, one torch thread per stage."""
    from models.runner import TwoStageRunner

    runner = TwoStageRunner(engine)  # its threads end with the process
    states = [engine.new_stream(100 + seed) for seed in range(batch)]
    requests = [(state, embeds[i % len(embeds)]) for i, state in enumerate(states)]
    return _Contender(
        f"engine_pipelined_batch_{batch}",
        batch,
        lambda: runner.step(requests).denoised.result(),
        finish=runner.drain,
        threads=1,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the engine benchmark and return its report."""
    import torch

    from models import default_model_path
    from models.tuning.choice import precision_summary

    model = Path(args.model) if args.model else default_model_path()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device == "cuda" else torch.float32
    contenders, engine = _contenders(model, args.steps, args.batches, device, dtype)
    precision, kind, resolution = precision_summary(engine), engine.kind, f"{engine.width}x{engine.height}"
    rounds = max(1, round(args.seconds / (ROUND_SECONDS * len(contenders))))
    for _ in tqdm(range(rounds), desc="bench engine", unit="round"):
        for contender in contenders:
            contender.run_for(ROUND_SECONDS)
    results = {c.name: c.summary() for c in contenders}
    naive_fps = results["naive_pipeline_per_frame"]["frames_per_second"]
    encode_ms = results["h264_encode"]["frame_p50_ms"]
    for name, result in results.items():
        if name.startswith("engine_"):
            result["ratio_vs_naive"] = round(result["frames_per_second"] / naive_fps, 3) if naive_fps else None
            model_ms = 1000.0 / result["frames_per_second"]
            result["model_share_of_frame_time"] = round(model_ms / (model_ms + encode_ms), 3)
    del engine
    contenders.clear()  # frees the engine's and the plain pipeline's memory before the side run
    side = _streamdiffusion(args, model, kind, device)
    if side.get("ran"):  # one stream each: streamdiffusion runs one prompt per batch
        for name in ("engine_batch_1", "engine_pipelined_batch_1"):
            if name in results:
                ratio = results[name]["frames_per_second"] / side["frames_per_second"]
                results[name]["ratio_vs_streamdiffusion"] = round(ratio, 3)
    return {
        "benchmark": "engine",
        "machine": machine(),
        "model": shown_path(model),
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "steps": args.steps,
        "resolution": resolution,
        "seconds": args.seconds,
        "engine_precision": precision,
        "results": results,
        "streamdiffusion": side,
        "notes": (
            "frames_per_second counts frames of all streams in a batch; engine and naive share weights and steps; "
            "engine_batch_N runs denoise and decode in turn on torch's threads (torch_threads), "
            "engine_pipelined_batch_N as the server does: decode on a second thread beside the next denoise, "
            "one torch thread each; "
            "the naive pipeline runs in dtype; on a CPU the engine switches to bfloat16 at the batch sizes in "
            "engine_precision, where it measured faster at start-up"
        ),
    }


def _streamdiffusion(args: argparse.Namespace, model: Path, kind: str, device: str) -> dict[str, Any]:
    """`streamdiffusion` on the same folder and steps, in its own venv, right after the engine's rounds."""
    from models.loading import PIXELCAST

    if device != "cuda":
        return {"ran": False, "reason": "the streamdiffusion package needs CUDA (and pins diffusers 0.24); no GPU here"}
    if kind == PIXELCAST:
        return {"ran": False, "reason": "streamdiffusion runs Stable-Diffusion-layout folders, not the shipped model"}
    if not args.streamdiffusion_python:
        return {"ran": False, "reason": "pass --streamdiffusion-python (a venv with streamdiffusion) to run it"}
    script = Path(__file__).with_name("streamdiffusion_side.py")
    seconds = args.seconds / 2
    command = [args.streamdiffusion_python, str(script), "--model", str(model), "--steps", str(args.steps)]
    import torch

    torch.cuda.empty_cache()
    try:
        done = subprocess.run(
            [*command, "--seconds", str(seconds)], capture_output=True, text=True, check=False, timeout=seconds + 600
        )
        report = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as error:
        return {"ran": False, "reason": f"streamdiffusion gave no report: {error}"}
    if report is None:
        return {"ran": False, "reason": f"streamdiffusion exited with {done.returncode}: {done.stderr.strip()[-600:]}"}
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `pixelcast bench engine`."""
    parser.add_argument("--seconds", type=float, default=20.0, help="total measuring time (default 20)")
    parser.add_argument("--steps", type=int, default=1, choices=(1, 2, 3, 4), help="denoising steps (default 1)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="engine batch sizes (default 1 4)")
    parser.add_argument("--model", help="pipeline folder (default: the shipped model)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda where there is one, else cpu")
    parser.add_argument(
        "--streamdiffusion-python", help="python of a venv with the streamdiffusion package, to run it side by side"
    )
    parser.add_argument("--json", type=Path, required=True, help="where to write the report")


def main(args: argparse.Namespace) -> int:
    """Entry point of `pixelcast bench engine`."""
    report = run(args)
    write_json(report, args.json)
    for name, result in report["results"].items():
        extra = f"  x{result['ratio_vs_naive']} vs naive" if "ratio_vs_naive" in result else ""
        print(f"{name:28s} {result['frames_per_second']:8.1f} frames/s  p50 {result['frame_p50_ms']:.1f} ms{extra}")
    return 0
