"""A whole deployment on loopback: a Redis Cluster, Pixelcast workers and nginx in front (and a TURN server).

Used by ``pixelcast cluster-demo``, the scale-out tests and ``pixelcast bench stream --workers N``. Each
part is a real process: the bundled ``redis-server`` (three masters), ``pixelcast serve --worker-id``,
Debian's ``nginx`` and ``turnserver`` (coturn).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from personalization.local_cluster import BackgroundCluster
from streamer.nginx import nginx_main, nginx_site

from .server_process import ServerProcess, free_port

NGINX = "nginx"
TURNSERVER = "turnserver"
START_SECONDS = 30.0


def find_program(name: str, *also: str) -> str | None:
    """``name`` on PATH or in the sbin folders Debian installs servers to (absent from a user's PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    return next((path for path in also if Path(path).exists()), None)


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start:\n{log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port}:\n{log.read_text(errors='replace')[-2000:]}")


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class NginxProcess:
    """nginx on a loopback port in front of ``workers`` (id -> host:port), with ``streamer.nginx``'s config."""

    def __init__(self, workers: dict[str, str], *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self._dir = tempfile.TemporaryDirectory(prefix="pixelcast-nginx-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def directory(self) -> Path:
        """Its config, logs and temporary files."""
        return Path(self._dir.name)

    def __enter__(self) -> NginxProcess:
        program = find_program(NGINX)
        if program is None:
            raise RuntimeError("nginx is not installed (Debian: apt-get install nginx)")
        site = nginx_site(self.workers, listen=f"127.0.0.1:{self.port}")
        user = "root" if os.geteuid() == 0 else None  # as root, nginx would switch to a user who cannot read here
        conf = self.directory / "nginx.conf"
        conf.write_text(nginx_main(site, str(self.directory), user=user), encoding="utf-8")
        log = self.directory / "error.log"
        self.process = subprocess.Popen(
            [program, "-p", str(self.directory), "-c", str(conf), "-e", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_port(self.port, self.process, "nginx", log)
        except BaseException:
            self.__exit__()
            raise
        return self

    def access_log(self) -> str:
        """What nginx logged of the requests so far."""
        path = self.directory / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        _stop(self.process)
        self._dir.cleanup()


class TurnProcess:
    """coturn on a loopback UDP port, with short-lived credentials from ``secret`` (TURN REST)."""

    def __init__(self, secret: str, *, port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.url = f"turn:127.0.0.1:{self.port}?transport=udp"
        self._dir = tempfile.TemporaryDirectory(prefix="pixelcast-turn-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """coturn's log."""
        return Path(self._dir.name) / "turn.log"

    def __enter__(self) -> TurnProcess:
        program = find_program(TURNSERVER)
        if program is None:
            raise RuntimeError("coturn is not installed (Debian: apt-get install coturn)")
        command = [
            program, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={self.port}",
            "--min-port=49152", "--max-port=65535", "--use-auth-secret", f"--static-auth-secret={self.secret}",
            "--realm=pixelcast", "--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers", "--fingerprint",
            f"--log-file={self.log_path}", "--simple-log", "--verbose", f"--pidfile={self._dir.name}/turn.pid",
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_SECONDS
        while "listener opened on" not in self.log() and "Total UDP servers" not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"turnserver did not start:\n{self.log()[-2000:]}")
            time.sleep(0.1)
        return self

    def log(self) -> str:
        """coturn's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        _stop(self.process)
        self._dir.cleanup()


@contextlib.contextmanager
def loopback_deployment(
    workers: int = 2, *, worker_args: Sequence[str] = (), nginx_port: int | None = None, log_dir: Path | None = None
) -> Iterator[tuple[str, list[ServerProcess], BackgroundCluster]]:
    """A three-master Redis Cluster, ``workers`` Pixelcast workers on it, and nginx in front; yields
    (nginx's URL, the workers, the cluster). Workers start one after the other (each calibrates its engine)."""
    with contextlib.ExitStack() as stack:
        cluster_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pixelcast-cluster-")))
        cluster = BackgroundCluster(cluster_dir)
        redis_url = stack.enter_context(cluster)
        servers = []
        for i in range(1, workers + 1):
            log = log_dir / f"worker-w{i}.log" if log_dir is not None else None
            args = ["--worker-id", f"w{i}", "--redis-url", redis_url, *worker_args]
            servers.append(stack.enter_context(ServerProcess(*args, log_path=log)))
        proxy = stack.enter_context(
            NginxProcess({f"w{i}": f"127.0.0.1:{s.port}" for i, s in enumerate(servers, 1)}, port=nginx_port)
        )
        yield proxy.url, servers, cluster
