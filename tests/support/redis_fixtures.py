"""Real redis-server instances for tests.

Theory of operation
-------------------
One ``redis-server`` (the Debian package) is started per test session on a
free loopback port, in a private temporary directory, without persistence.
Each test that asks for ``redis_url`` or ``redis_client`` gets a flushed
database. Tests that need to break Redis (stop it, kill it, restart it with
its data) must not touch the shared server: they ask ``make_redis_server``
for a private :class:`RedisServer`, which is stopped when the test ends.

Waiting is always "poll for a condition until a deadline", never a fixed
sleep: the server is up when it answers PING.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from ccd.store.redis_store import Store, connect_redis

__all__ = ["RedisServer", "find_redis_server", "free_port"]

_MISSING = (
    "redis-server is not installed: run `make test` (it installs it), "
    "or `apt-get update && apt-get install -y redis-server`"
)


def find_redis_server() -> str | None:
    """Path of the redis-server binary, or None."""
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if Path(candidate).is_file():
            return candidate
    return None


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the caller retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private redis-server process on 127.0.0.1 that a test may stop and restart.

    ``persistence=True`` turns on the append-only file with fsync on every write,
    so ``stop()``/``kill()`` then ``start()`` on the same port brings the data back,
    as a production Redis with persistence on would.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        persistence: bool = False,
        binary: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.persistence = persistence
        self.port = port or 0
        self._fixed_port = port is not None
        self._binary = binary or find_redis_server()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def logfile(self) -> Path:
        return self.workdir / "redis.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _command(self) -> list[str]:
        assert self._binary is not None
        command = [
            self._binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", str(self.logfile),
            "--save", "",
        ]  # fmt: skip
        if self.persistence:
            command += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            command += ["--appendonly", "no"]
        return command

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and return once it answers PING."""
        if self._binary is None:
            pytest.fail(_MISSING, pytrace=False)
        if self.running:
            return
        attempts = 1 if self._fixed_port else 5
        for attempt in range(attempts):
            if not self._fixed_port and (attempt > 0 or not self.port):
                self.port = free_port()
            self._process = subprocess.Popen(
                self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if self._wait_ready(timeout):
                self._fixed_port = True  # restarts come back on the same port
                return
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{self._log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        client = redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        try:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    return False  # e.g. the port was taken between free_port() and bind()
                try:
                    if client.ping():
                        return True
                except redis.exceptions.BusyLoadingError:
                    pass  # replaying the AOF
                except redis.exceptions.ConnectionError:
                    pass
                time.sleep(0.02)
            return False
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly (SIGTERM)."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Die at once (SIGKILL), as on a crash or an OOM kill."""
        self._end(signal.SIGKILL, 10.0)

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open, nothing answers."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def restart(self, timeout: float = 10.0) -> None:
        self.stop()
        self.start(timeout)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"

    def client(self, **kwargs: object) -> redis.Redis:
        options: dict[str, object] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
        options.update(kwargs)
        return redis.Redis.from_url(self.url, **options)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.url} {state} persistence={self.persistence}>"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's shared redis-server. Do not stop it; use make_redis_server for that."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of a clean database on the shared server (flushed before the test)."""
    if not redis_server.running:
        redis_server.start()  # a test broke the rule above; do not fail every later test
    client = redis_server.client()
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A raw redis-py client (bytes in, bytes out) on the clean database."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def store(redis_url: str) -> Iterator[Store]:
    """ccd's Store on the clean database, keys prefixed ``t:`` (a module may define its own)."""
    client = connect_redis(redis_url, socket_timeout=5.0)
    try:
        yield Store.create(client, "t:")
    finally:
        client.close()


@pytest.fixture
def make_redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory for private, started servers a test may stop/kill/restart; all stopped at the end.

    ``make_redis_server(persistence=True)`` keeps an append-only file in the test's tmp dir.
    """
    servers: list[RedisServer] = []

    def make(*, persistence: bool = False) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", persistence=persistence)
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                server.kill()
