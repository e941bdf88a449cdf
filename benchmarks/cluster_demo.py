"""`pixelcast cluster-demo`: the reference deployment on one machine, to open in a browser and look at.

A three-master Redis Cluster (the bundled redis-server), two workers (`pixelcast serve --worker-id`) on
it, and Debian's nginx in front, all on loopback. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time

from .deployment import find_program, loopback_deployment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `pixelcast cluster-demo`."""
    parser.add_argument("--port", type=int, default=8080, help="nginx's port on 127.0.0.1 (default 8080)")
    parser.add_argument("--workers", type=int, default=2, help="Pixelcast workers behind nginx (default 2)")
    parser.add_argument("--max-sessions", type=int, default=4, help="viewers per worker (default 4)")


def main(args: argparse.Namespace) -> int:
    """Start the deployment, print where to open it, and keep it up until interrupted."""
    if find_program("nginx") is None:
        print("pixelcast cluster-demo: nginx is not installed (Debian: apt-get install nginx)", file=sys.stderr)
        return 2
    print(f"starting a Redis Cluster (3 masters), {args.workers} workers and nginx; each worker loads and times "
          "the model, about a minute apiece ...", flush=True)
    # one admin token for every worker, so the dashboard works whichever worker nginx picks
    os.environ.setdefault("PIXELCAST_ADMIN_TOKEN", secrets.token_urlsafe(24))
    worker_args = ["--max-sessions", str(args.max_sessions)]
    with loopback_deployment(args.workers, worker_args=worker_args, nginx_port=args.port) as (url, workers, _):
        for i, worker in enumerate(workers, 1):
            print(f"  worker w{i}: {worker.url} (log {worker.log_path})")
        print(f"\nOpen {url}/ (the dashboard: {url}/dashboard, admin token {os.environ['PIXELCAST_ADMIN_TOKEN']}).")
        print("Ctrl-C stops the demo.", flush=True)
        try:
            while all(worker.process is not None and worker.process.poll() is None for worker in workers):
                time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopping ...", flush=True)
            return 0
    print("a worker exited; the demo stopped", file=sys.stderr)
    return 1
