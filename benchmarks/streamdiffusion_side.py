"""Time the `streamdiffusion` package on a local Stable-Diffusion-layout folder; JSON on stdout.

It runs in its own virtual environment (streamdiffusion pins diffusers 0.24 and needs CUDA), so it
imports nothing from Pixelcast: `pixelcast bench engine --streamdiffusion-python PATH` calls it with
that environment's python and puts the figures beside the engine's. Usage:

    python benchmarks/streamdiffusion_side.py --model FOLDER --steps 1 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> int:
    """Load the folder into `StreamDiffusion` (txt2img, no guidance), time frames, print a JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="local Stable-Diffusion-layout pipeline folder")
    parser.add_argument("--steps", type=int, default=1, help="denoising steps per frame")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time")
    parser.add_argument("--prompt", default="a calm ocean at sunset with gentle waves")
    args = parser.parse_args()

    import diffusers
    import streamdiffusion
    import torch
    from diffusers import StableDiffusionPipeline
    from streamdiffusion import StreamDiffusion

    if not torch.cuda.is_available():
        print(json.dumps({"ran": False, "reason": "streamdiffusion needs CUDA; none here"}))
        return 0
    pipe = StableDiffusionPipeline.from_pretrained(
        args.model, torch_dtype=torch.float16, local_files_only=True, safety_checker=None
    ).to("cuda")
    size = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
    # One entry of t_index_list per denoising step over a 50-step schedule, as its SD-turbo examples do.
    t_index_list = [round(i * 50 / args.steps) for i in range(args.steps)]
    stream = StreamDiffusion(
        pipe, t_index_list=t_index_list, torch_dtype=torch.float16, width=size, height=size, cfg_type="none"
    )
    stream.prepare(args.prompt, num_inference_steps=50, guidance_scale=0.0)
    for _ in range(10):  # warm-up, and fills the stream batch
        stream.txt2img()
    torch.cuda.synchronize()
    frame_seconds: list[float] = []
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        stream.txt2img()
        torch.cuda.synchronize()
        frame_seconds.append(time.perf_counter() - started)
    ordered = sorted(frame_seconds)
    report = {
        "ran": True,
        "frames": len(frame_seconds),
        "frames_per_second": round(len(frame_seconds) / sum(frame_seconds), 2),
        "frame_p50_ms": round(1000 * statistics.median(ordered), 3),
        "frame_p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 3),
        "resolution": f"{size}x{size}",
        "steps": args.steps,
        "t_index_list": t_index_list,
        "acceleration": "none (no TensorRT, no xformers); frames stay on the GPU, the engine's are copied to the host",
        "versions": {
            "streamdiffusion": getattr(streamdiffusion, "__version__", "unknown"),
            "diffusers": diffusers.__version__,
            "torch": torch.__version__,
        },
        "gpu": torch.cuda.get_device_name(0),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
