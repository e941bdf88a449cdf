"""The `pixelcast` command line."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from personalization.messages import MAX_MESSAGE_BYTES, MAX_STEER_CHARS
from personalization.workers import check_worker_id

from .bodies import MAX_JSON_BYTES, MAX_SDP_BYTES


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .config import ServerConfig
    from .generation import StreamSettings
    from .ice import IceSettings
    from .memory import limit_arenas
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
    try:
        ice = IceSettings(
            tuple(args.ice_server),
            username=args.ice_username,
            credential=args.ice_credential,
            turn_secret=args.turn_secret,
        )
    except ValueError as error:
        print(f"pixelcast: {error}", file=sys.stderr)
        return 2
    config = ServerConfig(
        host=args.host,
        port=args.port,
        stream=StreamSettings(fps=args.fps),
        steps=args.steps,
        max_sessions=args.max_sessions,
        min_fps=args.min_fps,
        engine_threads=args.engine_threads,
        retime_precision=args.retime_precision,
        redis_restart_delay=args.redis_restart_delay,
        redis_wait_replicas=args.redis_wait_replicas,
        spool_max_events=args.spool_max_events,
        token_rotate_days=args.token_rotate_days,
        token_verify_days=args.token_verify_days,
        offers_per_minute=args.offers_per_minute,
        viewers_per_minute=args.viewers_per_minute,
        sessions_per_address=args.sessions_per_address,
        messages_per_second=args.messages_per_second,
        ice_timeout=args.ice_timeout,
        max_body_bytes=args.max_body_bytes,
        max_sdp_bytes=args.max_sdp_bytes,
        max_message_bytes=args.max_message_bytes,
        max_steer_chars=args.max_steer_chars,
        ice=ice,
        worker_id=args.worker_id,
        advertise_url=args.advertise_url,
        **overrides,
    )
    if not (Path(config.model_path) / "model_index.json").is_file():
        print(f"pixelcast: no diffusers pipeline at {config.model_path} (model_index.json missing)", file=sys.stderr)
        return 2
    limit_arenas()  # before the server's threads start: see streamer.memory
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level=args.log_level)
    return 0


def _worker_id(text: str) -> str:
    try:
        return check_worker_id(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of `pixelcast` and its subcommands (with the arguments of the one `argv` asks for)."""
    parser = argparse.ArgumentParser(prog="pixelcast", description="Real-time, personalized generated video.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the viewer page, WHEP and the API")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--model", type=Path, help="diffusers pipeline folder (default: the shipped model)")
    serve.add_argument(
        "--redis-url",
        help="a Redis server (redis://, rediss://, unix://) or Redis Cluster (redis+cluster://host:port/?node=host:port)"
        " to use (default: $REDIS_URL, else an embedded one)",
    )
    serve.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="a STUN or TURN server for viewers behind NAT (stun:host:port, turn:host:port?transport=udp);"
        " repeatable. Used by the server's peer connections and sent to players in Link headers",
    )
    serve.add_argument("--ice-username", help="username for the TURN servers (fixed credentials)")
    serve.add_argument("--ice-credential", help="password for the TURN servers (fixed credentials)")
    serve.add_argument(
        "--turn-secret",
        default=os.environ.get("PIXELCAST_TURN_SECRET"),
        help="secret shared with the TURN server (coturn's static-auth-secret) for short-lived credentials"
        " (default: $PIXELCAST_TURN_SECRET)",
    )
    serve.add_argument(
        "--worker-id",
        type=_worker_id,
        help="run as one worker of several behind nginx (deploy/): heartbeats in Redis, session paths /w/<id>/...,"
        " and a full worker redirects new viewers to one with room",
    )
    serve.add_argument(
        "--advertise-url", help="this worker's base URL for its heartbeat (default: http://<host>:<port>)"
    )
    serve.add_argument(
        "--redis-wait-replicas",
        type=int,
        default=0,
        help="replicas that must confirm each feedback event (Redis WAIT) before it counts as stored; unconfirmed"
        " events are spooled and replayed, so a failover loses none (default 0)",
    )
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
        help="torch threads for each of the model's two stages, denoise and decode (default: half the cores but one)",
    )
    serve.add_argument(
        "--retime-precision",
        action="store_true",
        help="time float32 against bfloat16 again rather than reuse the choice saved in the data folder",
    )
    serve.add_argument(
        "--redis-restart-delay",
        type=float,
        default=0.5,
        help="seconds before an embedded Redis that died is restarted, doubled per failed try (default 0.5)",
    )
    serve.add_argument(
        "--spool-max-events",
        type=int,
        default=100_000,
        help="feedback events and steers kept on disk while Redis is away; beyond it they are refused (default 100000)",
    )
    serve.add_argument(
        "--token-rotate-days", type=float, default=30.0, help="days a viewer-token signing key signs (default 30)"
    )
    serve.add_argument(
        "--token-verify-days",
        type=float,
        default=180.0,
        help="days a replaced signing key still verifies tokens; viewers refresh theirs on each visit (default 180)",
    )
    limits = serve.add_argument_group("limits (per client address: the reverse proxy's, behind one)")
    limits.add_argument(
        "--offers-per-minute", type=float, default=30.0, help="POST /whep and /offer per address; then 429 (default 30)"
    )
    limits.add_argument(
        "--viewers-per-minute", type=float, default=10.0, help="POST /api/viewers per address; then 429 (default 10)"
    )
    limits.add_argument("--sessions-per-address", type=int, default=4, help="live sessions per address (default 4)")
    limits.add_argument(
        "--messages-per-second",
        type=float,
        default=30.0,
        help="data channel messages per session, in bursts of twice as many; more are dropped (default 30)",
    )
    limits.add_argument(
        "--ice-timeout", type=float, default=15.0, help="seconds a peer has to complete ICE (default 15)"
    )
    sizes = serve.add_argument_group("sizes (larger ones get 413, or an error message on the data channel)")
    sizes.add_argument(
        "--max-body-bytes", type=int, default=MAX_JSON_BYTES, help=f"JSON request bodies (default {MAX_JSON_BYTES})"
    )
    sizes.add_argument("--max-sdp-bytes", type=int, default=MAX_SDP_BYTES, help=f"SDP offers (default {MAX_SDP_BYTES})")
    sizes.add_argument(
        "--max-message-bytes",
        type=int,
        default=MAX_MESSAGE_BYTES,
        help=f"one data channel control message (default {MAX_MESSAGE_BYTES})",
    )
    sizes.add_argument(
        "--max-steer-chars", type=int, default=MAX_STEER_CHARS, help=f"a steer's text (default {MAX_STEER_CHARS})"
    )
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.set_defaults(run=_serve)

    groups = {
        "bench": commands.add_parser("bench", help="measure speed side by side and write JSON"),
        "eval": commands.add_parser("eval", help="evaluate and write JSON"),
    }
    subcommands = {name: group.add_subparsers(dest=name, required=True) for name, group in groups.items()}
    chosen = tuple(word for word in (sys.argv[1:] if argv is None else argv) if not word.startswith("-"))
    for command in _COMMANDS:
        words = command.words
        sub = (subcommands[words[0]] if len(words) > 1 else commands).add_parser(words[-1], help=command.help)
        # a command's module (and the model stack some import) loads only when it is the one asked for
        if chosen[: len(words)] == words:
            importlib.import_module(command.module).add_arguments(sub)
        sub.set_defaults(run=_Runner(command.runs or command.module))
    return parser


class _Runner:
    """Runs a command's `module:function(args)`, imported only then."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __call__(self, args: argparse.Namespace) -> int:
        module, _, function = self.target.partition(":")
        return int(getattr(importlib.import_module(module), function or "main")(args))


def simulate_main(args: argparse.Namespace) -> int:
    """`pixelcast simulate` over the world's vocabulary (personalization does not import models)."""
    from models.world.spec import ATTRIBUTES
    from personalization import ab_simulation, simulator

    if getattr(args, "ab", None) is not None:
        return ab_simulation.main(args, ATTRIBUTES)
    return simulator.main(args, ATTRIBUTES)


class _Command(NamedTuple):
    """A command that lives in its own module: `add_arguments(parser)` there, and what runs it."""

    words: tuple[str, ...]
    module: str
    help: str
    runs: str = ""  # `module:function`; default: the module's `main`


_COMMANDS = (
    _Command(
        ("bench", "engine"), "benchmarks.engine", "engine frames/s against the plain diffusers pipeline per frame"
    ),
    _Command(
        ("bench", "redis"), "benchmarks.redis_bench", "feedback events/s into Redis profiles, latency, exact counts"
    ),
    _Command(
        ("bench", "make-sd"), "benchmarks.random_sd", "write a random-weight SD-turbo-sized pipeline folder (GPU bench)"
    ),
    _Command(("bench", "stream"), "benchmarks.stream", "K real WebRTC viewers over loopback: fps, stalls, latency"),
    _Command(
        ("bench", "churn"), "benchmarks.churn", "N connect/stream/disconnect cycles: tasks, threads, fds, RSS, keys"
    ),
    _Command(("bench", "grounding"), "benchmarks.grounding", "how long the grounder takes to read a viewer's steer"),
    _Command(
        ("bench", "steer-readers"), "benchmarks.steer_readers", "which model reads each attribute of a steer best"
    ),
    _Command(("train",), "models.training.recipe", "train the shipped model from scratch (resumable)"),
    _Command(
        ("eval", "model"), "models.evaluation.model_eval", "prompt adherence, flicker, drift and transitions of a model"
    ),
    _Command(
        ("eval", "grounder"),
        "models.evaluation.grounder_fold",
        "the grounder's reading of new phrasings, on a validation fold",
    ),
    _Command(("nginx-config",), "streamer.nginx", "print nginx's configuration for workers behind one address"),
    _Command(
        ("cluster-demo",),
        "benchmarks.cluster_demo",
        "nginx, two workers and a three-master Redis Cluster on loopback; prints the URL to open",
    ),
    _Command(("report",), "benchmarks.summary", "write docs/performance.md from the reports in bench-results/*.json"),
    _Command(
        ("simulate",),
        "personalization.simulator",
        "compare personalization policies on simulated viewers, or run an A/B test on them (--ab)",
        runs="streamer.cli:simulate_main",
    ),
)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pixelcast` command."""
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "info").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
