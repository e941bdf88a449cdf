"""Run `pixelcast serve` as a child process on a free loopback port, as a user would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

# Every test and benchmark client comes from 127.0.0.1, many times a minute: the per-address limits would
# refuse them. A test of the limits passes its own values, which come later on the command line and win.
HARNESS_LIMITS = (
    "--offers-per-minute", "100000", "--viewers-per-minute", "100000", "--sessions-per-address", "1000",
    "--messages-per-second", "1000",
)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """`pixelcast serve` on loopback with its own data dir; a context manager that always stops it.

    Its log goes to `log_path` when given (kept), else into the data dir (removed with it).
    """

    def __init__(self, *extra_args: str, start_seconds: float = 180, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._extra_args = extra_args
        self._start_seconds = start_seconds
        self._data = tempfile.TemporaryDirectory(prefix="pixelcast-bench-")
        self.log_path = log_path or Path(self._data.name) / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None  # from launch until /healthz answers: model, warm-up, timing

    def __enter__(self) -> ServerProcess:
        command = [sys.executable, "-m", "streamer.cli", "serve", "--port", str(self.port)]
        command += ["--data-dir", self._data.name, *HARNESS_LIMITS, *self._extra_args]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )
        launched = time.monotonic()
        try:
            self._wait_healthy(launched + self._start_seconds)
        except BaseException:
            self.__exit__()  # a server that never came up is still stopped and its data dir removed
            raise
        self.startup_seconds = time.monotonic() - launched
        return self

    def _wait_healthy(self, deadline: float) -> None:
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"pixelcast serve exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"pixelcast serve did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.3)

    @property
    def data_dir(self) -> Path:
        """The server's data dir (embedded Redis under `redis/`, the event spool, the token keys)."""
        return Path(self._data.name)

    def log_lines(self, containing: str) -> list[str]:
        """The server's log lines so far that contain `containing` (its log goes away with it)."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return [line for line in text.splitlines() if containing in line]

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._data.cleanup()
