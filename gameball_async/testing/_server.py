"""`FakeGameball`: an in-process fake of the Gameball Batch API on aiohttp.web."""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

from aiohttp import web

from ._backend import FakeBackend
from ._faults import Faults, InjectedReply, InjectRoute, RecordedRequest
from ._jobs import FakeJob
from ._loop_thread import LoopThread
from ._settings import DEFAULT_BASE_PATH, FakeSettings, with_overrides

__all__ = ["DEFAULT_BASE_PATH", "FakeGameball"]

# in-flight handlers (e.g. a slow fault) get this long to finish on close
_SHUTDOWN_TIMEOUT: Final = 0.5
_T = TypeVar("_T")


class FakeGameball:
    """An in-process fake of the Gameball Batch API: its routes, checks, job lifecycle and faults.

    Use it as an async context manager (or :meth:`start` / :meth:`close`) to
    serve on the running event loop, or as a plain context manager (or
    :meth:`start_in_thread` / :meth:`close_in_thread`) to serve from its own
    thread and event loop, which works from sync code and from any test runner.
    It serves on ``host:port`` (port 0 picks a free one) and records what it
    saw. The job lifecycle is computed lazily from ``clock``: no task per job.

    Served from its own thread, every method and property runs on the
    server's loop and waits for it (a round trip to that thread), so it is safe from
    any thread: ``requests``, ``counts``, ``jobs`` and ``created_bodies`` then
    return snapshot copies, and a change (``faults = ...``, :meth:`inject`,
    :meth:`add_customer`, ...) is in place before the server handles the next
    request. Served on the caller's loop they return the live objects.

    Request handling order: record -> scripted reply (:meth:`inject`) -> rate
    limit -> random faults -> authentication -> handler. A request that
    consumed a scripted reply skips the random faults. Only requests accepted
    by the rate limiter count toward its windows.

    ``counts`` keys: ``requests``, ``create``, ``status``, ``stop``,
    ``create:<operation>``, ``jobs_created``, ``reply:<status>``,
    ``fault:429``, ``fault:500``, ``fault:503``, ``fault:drop``,
    ``fault:slow``, ``fault:malformed``, ``fault:unknown_status``,
    ``rate_limited`` (real rate-limit 429s) and ``injected``.

    Besides the API, ``GET /_fake/stats`` (see :meth:`stats`) and
    ``POST /_fake/reset`` (see :meth:`reset`) are served at :attr:`origin`,
    without authentication and without being recorded.

    :param settings: the settings (default :class:`FakeSettings` ``()``).
    :param ssl_context: serve HTTPS with this server context.
    :param clock: monotonic clock in seconds driving the lifecycle, the rate
        limits and :attr:`RecordedRequest.arrived_at` (default :func:`time.monotonic`).
    :param overrides: :class:`FakeSettings` fields, overriding those of
        ``settings`` (``FakeGameball(processing_rate=50.0)``).
    :raises ValueError: on an invalid setting (the message names it).
    :raises TypeError: on an unknown setting, or one of the wrong type.
    """

    def __init__(
        self,
        settings: FakeSettings | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] | None = None,
        **overrides: Any,
    ) -> None:
        settings = with_overrides(settings, overrides)
        self._settings = settings
        self._backend = FakeBackend(settings, clock=clock if clock is not None else time.monotonic)
        self._ssl_context = ssl_context
        self._runner: web.AppRunner | None = None
        self._state: Literal["unopened", "running", "closed"] = "unopened"
        self._origin: str | None = None
        self._loop_thread: LoopThread | None = None

    def __repr__(self) -> str:
        where = self._origin or "unbound"
        return f"<FakeGameball {self._state} {where} jobs={len(self.jobs)}>"

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Bind and start serving.

        :raises RuntimeError: when already started, or closed (a fake cannot be reopened).
        :raises OSError: when the address cannot be bound.
        """
        if self._state != "unopened":
            raise RuntimeError(f"FakeGameball is {self._state}; it cannot be started again")
        app = self._backend.make_app()
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(
                runner, self._settings.host, self._settings.port, ssl_context=self._ssl_context
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._state = runner, "running"
        host, port = runner.addresses[0][:2]
        scheme = "https" if self._ssl_context is not None else "http"
        self._origin = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"

    async def close(self) -> None:
        """Stop serving and close every connection; idempotent.

        A fake served from its own thread is closed as by :meth:`close_in_thread`.
        """
        if self._loop_thread is not None and not self._loop_thread.in_loop_thread:
            await asyncio.to_thread(self.close_in_thread)
            return
        self._state = "closed"
        self._backend.closing.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def start_in_thread(self) -> None:
        """Bind and start serving from a new daemon thread with its own event loop.

        Returns once the server accepts connections; close with
        :meth:`close_in_thread` (or :meth:`close`).

        :raises RuntimeError: when already started, or closed.
        :raises OSError: when the address cannot be bound.
        """
        if self._state != "unopened" or self._loop_thread is not None:
            raise RuntimeError(f"FakeGameball is {self._state}; it cannot be started again")
        loop_thread = LoopThread(name=f"FakeGameball-{id(self):x}")
        loop_thread.start()
        try:
            loop_thread.run(self.start)
        except BaseException:
            loop_thread.stop()
            raise
        self._loop_thread = loop_thread

    def close_in_thread(self) -> None:
        """Stop a fake served from its own thread, and end that thread; idempotent.

        What it recorded stays readable afterwards.

        :raises RuntimeError: when the fake serves on a caller's event loop
            (``await`` :meth:`close` there).
        """
        loop_thread = self._loop_thread
        if loop_thread is None:
            if self._state == "running":
                raise RuntimeError("FakeGameball serves on an event loop: await close() there")
            self._state = "closed"
            return
        try:
            loop_thread.run(self.close)
        finally:
            loop_thread.stop()
            self._loop_thread = None

    def __enter__(self) -> FakeGameball:
        self.start_in_thread()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_in_thread()

    def _on_server(self, func: Callable[[], _T]) -> _T:
        """Run ``func`` where the server's state lives (see the class docstring)."""
        loop_thread = self._loop_thread
        return func() if loop_thread is None else loop_thread.call(func)

    def _snapshot(self, live: _T, copy: Callable[[_T], _T]) -> _T:
        """``live`` on the caller's loop; from a thread, a copy made on the server's loop."""
        return live if self._loop_thread is None else self._on_server(lambda: copy(live))

    async def __aenter__(self) -> FakeGameball:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- what a test reads ---------------------------------------------------

    @property
    def origin(self) -> str:
        """``scheme://host:port`` of the running server (``/_fake/*`` lives there).

        :raises RuntimeError: before :meth:`start`.
        """
        if self._origin is None:
            raise RuntimeError("FakeGameball is not started")
        return self._origin

    @property
    def base_url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:PORT/api/v4.0/integrations``.

        :raises RuntimeError: before :meth:`start`.
        """
        return self.origin + self._settings.base_path

    @property
    def settings(self) -> FakeSettings:
        """The settings this fake was made with (:attr:`faults` is the current faults)."""
        return self._settings

    @property
    def api_key(self) -> str:
        """The accepted ``APIKey``."""
        return self._settings.api_key

    @property
    def secret_key(self) -> str:
        """The accepted ``SecretKey``."""
        return self._settings.secret_key

    @property
    def faults(self) -> Faults:
        """The random fault configuration; assign a new :class:`Faults` to change it."""
        return self._on_server(lambda: self._backend.faults)

    @faults.setter
    def faults(self, value: Faults) -> None:
        if not isinstance(value, Faults):
            raise TypeError(f"expected Faults, got {value!r}")
        self._on_server(lambda: setattr(self._backend, "faults", value))

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every recorded request, in arrival order (``reply_status`` 0 while in flight)."""
        return self._snapshot(self._backend.requests, list)

    @property
    def counts(self) -> collections.Counter[str]:
        """Traffic counters; see the class docstring for the keys."""
        return self._snapshot(self._backend.counts, collections.Counter)

    @property
    def jobs(self) -> dict[int, FakeJob]:
        """Every job created, by id."""
        return self._snapshot(self._backend.jobs, dict)

    @property
    def created_bodies(self) -> collections.Counter[str]:
        """sha256 hex digest of each creation body that created a job -> times."""
        return self._snapshot(self._backend.created_bodies, collections.Counter)

    def max_requests_in(self, window_seconds: float) -> int:
        """The most requests that arrived within any window of this length.

        Counts every recorded request, whatever its reply (rate-limited ones too).

        :param window_seconds: window length in seconds.
        :return: the maximum count.
        """
        return self._on_server(lambda: self._backend.max_requests_in(window_seconds))

    def stats(self) -> dict[str, Any]:
        """The counters served at ``GET /_fake/stats``.

        :return: ``{"counts", "jobs_created", "jobs_total", "requests",
            "max_per_second", "max_per_window"}``.
        """
        return self._on_server(self._backend.stats)

    def reset(self) -> None:
        """Clear :attr:`requests`, :attr:`counts` and the rate-limit windows (jobs stay)."""
        self._on_server(self._backend.reset)

    # -- test controls -------------------------------------------------------

    def add_customer(self, customer_id: str, balance: float = 0.0) -> None:
        """Create (or overwrite) a customer with a balance.

        :param customer_id: the customer id.
        :param balance: its balance.
        """
        self._on_server(lambda: self._backend.ledger.add_customer(customer_id, balance))

    def balance(self, customer_id: str) -> float:
        """A customer's current balance (item effects apply when a job is created).

        :param customer_id: the customer id.
        :return: the balance (``default_balance`` for a customer not seen yet).
        :raises KeyError: when customers must exist and this one was never created.
        """
        return self._on_server(lambda: self._backend.ledger.balance(customer_id))

    def inject(self, route: InjectRoute, *replies: InjectedReply) -> None:
        """Queue scripted replies, consumed first-in first-out by matching requests.

        :param route: ``"create"``, ``"status"``, ``"stop"`` or ``"any"`` (any of them).
        :param replies: the replies, in order.
        :raises ValueError: on an unknown route.
        :raises TypeError: when a reply is not an :class:`InjectedReply`.
        """
        if route not in ("create", "status", "stop", "any"):
            raise ValueError(f"unknown route {route!r}")
        for reply in replies:
            if not isinstance(reply, InjectedReply):
                raise TypeError(f"expected InjectedReply, got {reply!r}")
        queued = [(route, reply) for reply in replies]
        self._on_server(lambda: self._backend.injections.extend(queued))

    @property
    def pending_injections(self) -> int:
        """Number of scripted replies not consumed yet."""
        return self._on_server(lambda: len(self._backend.injections))

    def _job(self, job_id: int) -> FakeJob:
        try:
            return self._backend.jobs[job_id]
        except KeyError:
            raise KeyError(f"no job {job_id}") from None

    def stop_job(self, job_id: int) -> None:
        """Stop a job server-side, as if someone else had (no-op when terminal).

        :param job_id: the job id.
        :raises KeyError: for an unknown job.
        """
        self._on_server(lambda: self._job(job_id).stop(self._backend.clock()))

    def fail_job(self, job_id: int) -> None:
        """Make a job end ``Failed`` now, counts frozen (no-op when terminal).

        :param job_id: the job id.
        :raises KeyError: for an unknown job.
        """
        self._on_server(lambda: self._job(job_id).fail(self._backend.clock()))

    def job_state(self, job_id: int) -> str:
        """A job's canonical state word now.

        :param job_id: the job id.
        :return: ``Queued``, ``Running``, ``Completed``, ``Failed`` or ``Stopped``.
        :raises KeyError: for an unknown job.
        """
        return self._on_server(lambda: self._job(job_id).state(self._backend.clock()))
