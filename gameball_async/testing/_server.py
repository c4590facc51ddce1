"""`FakeGameball`: an in-process fake of the Gameball Batch API on aiohttp.web."""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

from aiohttp import web

from ._backend import FakeBackend, StatusShape
from ._faults import Faults, InjectedReply, InjectRoute, RecordedRequest
from ._jobs import FakeJob
from ._loop_thread import LoopThread

__all__ = ["DEFAULT_BASE_PATH", "FakeGameball"]

DEFAULT_BASE_PATH: Final = "/api/v4.0/integrations"
# in-flight handlers (e.g. a slow fault) get this long to finish on close
_SHUTDOWN_TIMEOUT: Final = 0.5
_T = TypeVar("_T")


class FakeGameball:
    """An in-process fake of the Gameball Batch API (DESIGN sections 1 and 6).

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

    :param api_key: the accepted ``APIKey``.
    :param secret_key: the accepted ``SecretKey``.
    :param host: interface to bind (use an IP literal).
    :param port: TCP port, 0 for a free one.
    :param processing_rate: items processed per second per running job.
    :param queue_delay: seconds a job stays ``Queued``.
    :param faults: random fault injection; :attr:`faults` can be replaced at runtime.
    :param seed: seeds faults, job ids, failed jobs, request ids and mixed shapes.
    :param enforce_rate_limit: reply 429 (code 2002, ``Retry-After`` in whole
        seconds) beyond the documented rate limits, per API key.
    :param rate_per_second: accepted requests allowed in any 1 s.
    :param rate_per_window: accepted requests allowed in any ``rate_window`` s.
    :param rate_window: the long window, in seconds.
    :param customers: customers created before serving, as with :meth:`add_customer`:
        a mapping of id to balance, or ids (each with ``default_balance``).
    :param customers_must_exist: items of a customer never created (through
        ``customers``, ``/batch/customers`` or :meth:`add_customer`) fail with
        7000; ``None`` (the default) means ``True`` when ``customers`` is given.
    :param default_balance: starting balance of a customer not seen before
        (auto-known, or created through ``/batch/customers``).
    :param status_shape: ``"guide"``, ``"openapi"`` or ``"mixed"`` (seeded per reply).
    :param failed_job_rate: probability that a job ends ``Failed`` part-way.
    :param ssl_context: serve HTTPS with this server context.
    :param base_path: path prefix of the API routes.
    :param clock: monotonic clock in seconds driving the lifecycle, the rate
        limits and :attr:`RecordedRequest.arrived_at` (default :func:`time.monotonic`).
    :param wall_offset: seconds added to the wall clock behind the replies'
        timestamps (``createdAt``, ``startedAt``): negative plays a server whose
        clock is behind the client's, positive one that is ahead.
    :param report_started_at: with ``False``, status replies carry no
        ``startedAt`` at all.
    :raises ValueError: on an invalid setting.
    """

    def __init__(
        self,
        *,
        api_key: str = "test-api-key",
        secret_key: str = "test-secret-key",
        host: str = "127.0.0.1",
        port: int = 0,
        processing_rate: float = 1000.0,
        queue_delay: float = 0.05,
        faults: Faults | None = None,
        seed: int = 0,
        enforce_rate_limit: bool = True,
        rate_per_second: int = 30,
        rate_per_window: int = 360,
        rate_window: float = 30.0,
        customers: Mapping[str, float] | Iterable[str] | None = None,
        customers_must_exist: bool | None = None,
        default_balance: float = 1000.0,
        status_shape: StatusShape = "guide",
        failed_job_rate: float = 0.0,
        ssl_context: ssl.SSLContext | None = None,
        base_path: str = DEFAULT_BASE_PATH,
        clock: Callable[[], float] | None = None,
        wall_offset: float = 0.0,
        report_started_at: bool = True,
    ) -> None:
        if not processing_rate > 0:
            raise ValueError(f"processing_rate must be > 0, got {processing_rate!r}")
        if not queue_delay >= 0:
            raise ValueError(f"queue_delay must be >= 0, got {queue_delay!r}")
        if status_shape not in ("guide", "openapi", "mixed"):
            raise ValueError(f"unknown status_shape {status_shape!r}")
        if not 0.0 <= failed_job_rate <= 1.0:
            raise ValueError(f"failed_job_rate must be in 0..1, got {failed_job_rate!r}")
        if rate_per_second < 1 or rate_per_window < 1 or not rate_window > 0:
            raise ValueError("rate limits must be positive")
        if isinstance(customers, str):
            raise TypeError("customers must be ids or a mapping of id to balance, not a str")
        if customers_must_exist is None:
            customers_must_exist = customers is not None
        stripped = base_path.strip("/")
        self._backend = FakeBackend(
            api_key=api_key,
            secret_key=secret_key,
            processing_rate=float(processing_rate),
            queue_delay=float(queue_delay),
            faults=faults if faults is not None else Faults(),
            seed=seed,
            enforce_rate_limit=enforce_rate_limit,
            rate_per_second=rate_per_second,
            rate_per_window=rate_per_window,
            rate_window=float(rate_window),
            customers_must_exist=customers_must_exist,
            default_balance=float(default_balance),
            status_shape=status_shape,
            failed_job_rate=float(failed_job_rate),
            base_path="/" + stripped if stripped else "",
            clock=clock if clock is not None else time.monotonic,
            wall_offset=float(wall_offset),
            report_started_at=report_started_at,
        )
        if customers is not None:
            self._backend.ledger.add_customers(customers)
        self._host, self._port = host, port
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
            site = web.TCPSite(runner, self._host, self._port, ssl_context=self._ssl_context)
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
        return self.origin + self._backend.base_path

    @property
    def api_key(self) -> str:
        """The accepted ``APIKey``."""
        return self._backend.api_key

    @property
    def secret_key(self) -> str:
        """The accepted ``SecretKey``."""
        return self._backend.secret_key

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
