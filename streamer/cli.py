"""The `pixelcast` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from benchmarks import engine as _bench_engine
from benchmarks import redis_bench as _bench_redis
from benchmarks import stream as _bench_stream
from models.evaluation import model_eval as _eval_model
from models.training import recipe as _train
from personalization import simulator as _simulate

from .generation import StreamSettings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .config import ServerConfig
    from .server import create_app

    overrides = {
        key: value
        for key, value in {
            "model_path": args.model,
            "redis_url": args.redis_url,
            "data_dir": args.data_dir,
        }.items()
        if value is not None
    }
    config = ServerConfig(
        host=args.host,
        port=args.port,
        stream=StreamSettings(fps=args.fps),
        steps=args.steps,
        max_sessions=args.max_sessions,
        min_fps=args.min_fps,
        engine_threads=args.engine_threads,
        **overrides,
    )
    if not (Path(config.model_path) / "model_index.json").is_file():
        print(f"pixelcast: no diffusers pipeline at {config.model_path} (model_index.json missing)", file=sys.stderr)
        return 2
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level=args.log_level)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `pixelcast` and its subcommands."""
    parser = argparse.ArgumentParser(prog="pixelcast", description="Real-time, personalized generated video.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the viewer page, WHEP and the API")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--model", type=Path, help="diffusers pipeline folder (default: the shipped model)")
    serve.add_argument("--redis-url", help="a Redis server to use (default: $REDIS_URL, else an embedded one)")
    serve.add_argument("--data-dir", type=Path, help="where the embedded Redis and the token secret live")
    serve.add_argument("--fps", type=int, default=24, help="frames per second of each stream (default 24)")
    serve.add_argument(
        "--steps", type=int, default=1, choices=(1, 2, 3, 4), help="most denoising steps per frame (default 1)"
    )
    serve.add_argument("--max-sessions", type=int, default=8, help="viewers served at once (default 8)")
    serve.add_argument(
        "--min-fps", type=int, default=12, help="frame-rate floor; new viewers get 503 below it (default 12)"
    )
    serve.add_argument(
        "--engine-threads",
        type=int,
        help="torch threads for each of the model's two stages, denoise and decode (default: half of all cores but one)",
    )
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.set_defaults(run=_serve)

    bench = commands.add_parser("bench", help="measure speed side by side and write JSON")
    benches = bench.add_subparsers(dest="bench", required=True)
    engine = benches.add_parser("engine", help="engine frames/s against the plain diffusers pipeline per frame")
    _bench_engine.add_arguments(engine)
    engine.set_defaults(run=_bench_engine.main)
    redis_bench = benches.add_parser("redis", help="feedback events/s into Redis profiles, latency, exact counts")
    _bench_redis.add_arguments(redis_bench)
    redis_bench.set_defaults(run=_bench_redis.main)
    stream = benches.add_parser("stream", help="K real WebRTC viewers over loopback: fps, stalls, latency")
    _bench_stream.add_arguments(stream)
    stream.set_defaults(run=_bench_stream.main)

    train = commands.add_parser("train", help="train the shipped model from scratch (resumable)")
    _train.add_arguments(train)
    train.set_defaults(run=_train.main)

    evaluate = commands.add_parser("eval", help="evaluate and write JSON")
    evaluations = evaluate.add_subparsers(dest="eval", required=True)
    eval_model = evaluations.add_parser("model", help="prompt adherence, flicker, drift and transitions of a model")
    _eval_model.add_arguments(eval_model)
    eval_model.set_defaults(run=_eval_model.main)

    simulate = commands.add_parser("simulate", help="compare personalization policies on simulated viewers")
    _simulate.add_arguments(simulate)
    simulate.set_defaults(run=_simulate_main)
    return parser


def _simulate_main(args: argparse.Namespace) -> int:
    from models.world.spec import ATTRIBUTES

    return _simulate.main(args, ATTRIBUTES)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pixelcast` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "info").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
