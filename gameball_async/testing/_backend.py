"""The fake's request pipeline and state, behind :class:`FakeGameball`.

Every request to an API route goes through the same steps, in this order:

1. it is recorded (``requests``, ``counts``);
2. a scripted reply queued with ``inject`` is consumed if one matches the
   route (a request that consumed one skips the random faults of step 4);
3. the rate limit (per API key, sliding windows; only accepted requests count);
4. random faults (:class:`Faults`, one seeded generator, fixed draw order);
5. authentication (``APIKey`` / ``SecretKey`` headers);
6. the route's handler (validation, job creation, status, stop).

A ``drop`` or ``malformed`` fault on a creation and a ``drop_after`` scripted
reply act after step 6: the job exists although the client never learns its id.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

import attrs
from aiohttp import web

from ._faults import InjectedReply, RecordedRequest, Route
from ._jobs import UNKNOWN_STATUS_WORD, FakeJob, Ledger, render_status
from ._replies import (
    drop_connection,
    error_response,
    fault_response,
    iso_timestamp,
    json_response,
    malformed_response,
    scripted_response,
)
from ._settings import FakeSettings
from ._sliding_window import SlidingWindowLimiter, max_in_window, retry_after_seconds
from ._wire import CREATE_ROUTES, RATE_LIMIT_CODE, PayloadError, parse_creation

__all__ = ["FakeBackend"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_FAULT_CODES: Final = {"429": RATE_LIMIT_CODE, "500": 5000, "503": 5003}
_MAX_BODY: Final = 32 * 1024 * 1024


@attrs.define
class _Reply:
    """What happened to one request, filled in along the pipeline."""

    fault: str | None = None
    dropped: bool = False


class FakeBackend:
    """State and request handling of the fake, without sockets.

    :class:`FakeGameball` owns one and serves :meth:`make_app`.

    :param settings: the fake's settings (validated already).
    :param clock: the monotonic clock driving lifecycles and rate limits.
    """

    def __init__(self, settings: FakeSettings, *, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.faults = settings.faults
        self.clock = clock
        self.requests: list[RecordedRequest] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.jobs: dict[int, FakeJob] = {}
        self.created_bodies: collections.Counter[str] = collections.Counter()
        self.ledger = Ledger(
            customers_must_exist=settings.customers_exist_only,
            default_balance=settings.default_balance,
        )
        if settings.customers is not None:
            self.ledger.add_customers(settings.customers)
        self.injections: list[tuple[str, InjectedReply]] = []
        self._limiter = SlidingWindowLimiter(
            ((settings.rate_per_second, 1.0), (settings.rate_per_window, settings.rate_window))
        )
        self._fault_rng = random.Random(settings.seed)
        self._job_rng = random.Random(f"jobs:{settings.seed}")
        self._shape_rng = random.Random(f"shape:{settings.seed}")
        self._id_rng = random.Random(f"ids:{settings.seed}")
        self._next_job_id = 1000 + self._job_rng.randrange(1000)
        self._wall0, self._clock0 = time.time(), clock()
        #: set on close: in-flight delays end at once and their connections drop.
        self.closing = asyncio.Event()

    # -- read-outs -----------------------------------------------------------

    def max_requests_in(self, window_seconds: float) -> int:
        """The most recorded requests that arrived within any window of this length.

        :param window_seconds: window length, seconds.
        :return: the maximum count.
        """
        return max_in_window((r.arrived_at for r in self.requests), window_seconds)

    def reset(self) -> None:
        """Clear requests, counts and rate-limit windows (jobs and ledger stay)."""
        self.requests.clear()
        self.counts.clear()
        self._limiter.reset()

    def stats(self) -> dict[str, Any]:
        """The counters served at ``GET /_fake/stats``.

        :return: ``{"counts", "jobs_created", "jobs_total", "requests",
            "max_per_second", "max_per_window"}``.
        """
        return {
            "counts": dict(self.counts),
            "jobs_created": self.counts["jobs_created"],
            "jobs_total": len(self.jobs),
            "requests": len(self.requests),
            "max_per_second": self.max_requests_in(1.0),
            "max_per_window": self.max_requests_in(self.settings.rate_window),
        }

    # -- the aiohttp application ---------------------------------------------

    def make_app(self) -> web.Application:
        """Build the aiohttp application serving the API and ``/_fake/*``.

        :return: a new application.
        """
        app = web.Application(client_max_size=_MAX_BODY)
        base = self.settings.base_path
        for operation, path in CREATE_ROUTES.items():
            app.router.add_post(base + path, self._handler("create", operation))
        app.router.add_get(base + "/batch/{job_id}", self._handler("status", None))
        app.router.add_delete(base + "/batch/{job_id}", self._handler("stop", None))
        app.router.add_get("/_fake/stats", self._stats_handler)
        app.router.add_post("/_fake/reset", self._reset_handler)
        app.router.add_route("*", "/{tail:.*}", self._handler("other", None))
        return app

    async def _stats_handler(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats())

    async def _reset_handler(self, _request: web.Request) -> web.StreamResponse:
        self.reset()
        return web.json_response({"reset": True})

    def _handler(self, route: Route, operation: str | None) -> _Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, route, operation)

        return handle

    async def _serve(
        self, request: web.Request, route: Route, operation: str | None
    ) -> web.StreamResponse:
        arrived = self.clock()
        body = await request.read()
        entry = RecordedRequest(
            method=request.method,
            path=request.path,
            route=route,
            operation=operation,
            headers={str(k): v for k, v in request.headers.items()},
            body=body,
            arrived_at=arrived,
        )
        index = len(self.requests)
        self.requests.append(entry)
        self.counts["requests"] += 1
        if route != "other":
            self.counts[route] += 1
        if operation is not None:
            self.counts[f"create:{operation}"] += 1
        reply = _Reply()
        status = 0
        try:
            response = await self._pipeline(request, route, operation, body, reply)
            status = 0 if reply.dropped else response.status
            return response
        finally:
            # also runs when the handler is cancelled at shutdown: status stays 0
            if status:
                self.counts[f"reply:{status}"] += 1
            if index < len(self.requests) and self.requests[index] is entry:
                self.requests[index] = attrs.evolve(entry, reply_status=status, fault=reply.fault)

    async def _pipeline(
        self,
        request: web.Request,
        route: Route,
        operation: str | None,
        body: bytes,
        reply: _Reply,
    ) -> web.StreamResponse:
        injected = self._take_injection(route)
        if injected is not None:
            self.counts["injected"] += 1
            reply.fault = f"injected:{injected.action}"
            if await self._sleep(injected.delay):
                return self._drop(request, reply)
            if injected.action == "reply":
                return scripted_response(injected, self._request_id())
            if injected.action == "drop":
                return self._drop(request, reply)
        if self.settings.enforce_rate_limit:
            wait = self._limiter.acquire(request.headers.get("APIKey", ""), self.clock())
            if wait is not None:
                self.counts["rate_limited"] += 1
                reply.fault = reply.fault or "rate_limited"
                headers = {"Retry-After": str(retry_after_seconds(wait))}
                return error_response(RATE_LIMIT_CODE, self._request_id(), headers=headers)
        fault, latency = self._draw_fault(route) if injected is None else (None, 0.0)
        if await self._sleep(latency):
            return self._drop(request, reply)
        if fault in _FAULT_CODES or (fault == "drop" and route != "create"):
            self._count_fault(fault, reply)
            if fault == "drop":
                return self._drop(request, reply)
            return fault_response(_FAULT_CODES[fault], self._request_id(), self.faults)
        if fault == "slow":
            self._count_fault(fault, reply)
            if await self._sleep(self.faults.slow_seconds):
                return self._drop(request, reply)
        response = self._check_auth(request)
        if response is None:
            response = self._dispatch(
                request, route, operation, body, reply, unknown_status=fault == "unknown_status"
            )
        if fault == "drop" or (injected is not None and injected.action == "drop_after"):
            if fault == "drop":
                self._count_fault(fault, reply)
            return self._drop(request, reply)
        if fault == "malformed" and response.status == 200:
            self._count_fault(fault, reply)
            return malformed_response(response)
        return response

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, cut short when the server closes; return whether it was."""
        if seconds <= 0:
            return False
        try:
            await asyncio.wait_for(self.closing.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    @staticmethod
    def _drop(request: web.Request, reply: _Reply) -> web.StreamResponse:
        reply.dropped = True
        return drop_connection(request)

    def _count_fault(self, fault: str | None, reply: _Reply) -> None:
        self.counts[f"fault:{fault}"] += 1
        reply.fault = fault

    def _take_injection(self, route: Route) -> InjectedReply | None:
        if route == "other":
            return None
        for index, (target, injected) in enumerate(self.injections):
            if target in (route, "any"):
                del self.injections[index]
                return injected
        return None

    def _draw_fault(self, route: Route) -> tuple[str | None, float]:
        faults = self.faults
        if route not in faults.routes:
            return None, 0.0
        chosen: str | None = None
        # one draw per kind, always, so the stream stays aligned across requests
        for kind, probability in faults.probabilities():
            draw = self._fault_rng.random()
            applicable = kind != "unknown_status" or route == "status"
            if chosen is None and applicable and draw < probability:
                chosen = kind
        low, high = faults.latency
        latency = self._fault_rng.uniform(low, high) if high > 0 else 0.0
        return chosen, latency

    def _check_auth(self, request: web.Request) -> web.Response | None:
        api_key = request.headers.get("APIKey")
        if api_key is None or not _same(api_key, self.settings.api_key):
            return error_response(1000, self._request_id())
        secret = request.headers.get("SecretKey")
        if secret is None:
            return error_response(1001, self._request_id())
        if not _same(secret, self.settings.secret_key):
            return error_response(1000, self._request_id())
        return None

    def _dispatch(
        self,
        request: web.Request,
        route: Route,
        operation: str | None,
        body: bytes,
        reply: _Reply,
        *,
        unknown_status: bool,
    ) -> web.Response:
        if route == "create" and operation is not None:
            return self._create(operation, body)
        if route == "other":
            message = f"No route {request.method} {request.path}."
            return error_response(4004, self._request_id(), message)
        raw_id = request.match_info["job_id"]
        job = None
        if raw_id.isascii() and raw_id.isdigit() and len(raw_id) < 19:
            job = self.jobs.get(int(raw_id))
        if job is None:
            return error_response(4004, self._request_id(), f"Batch job {raw_id!r} not found.")
        now = self.clock()
        word = None
        if route == "stop":
            job.stop(now)
        elif unknown_status and not job.is_terminal(now):
            self._count_fault("unknown_status", reply)
            word = UNKNOWN_STATUS_WORD
        shape: Literal["guide", "openapi"]
        if self.settings.status_shape == "mixed":
            shape = self._shape_rng.choice(("guide", "openapi"))
        else:
            shape = self.settings.status_shape
        status = render_status(job, now, shape, self.timestamp, word=word)
        if not self.settings.report_started_at:
            status.pop("startedAt", None)
        return json_response(200, status)

    def _create(self, operation: str, body: bytes) -> web.Response:
        try:
            items = parse_creation(body, operation)
        except PayloadError as exc:
            return error_response(exc.code, self._request_id(), exc.message)
        outcomes = self.ledger.decide(operation, items)
        fail_at = None
        if (
            self.settings.failed_job_rate > 0
            and self._job_rng.random() < self.settings.failed_job_rate
        ):
            fail_at = self._job_rng.randint(min(1, len(items) - 1), len(items) - 1)
        job_id, self._next_job_id = self._next_job_id, self._next_job_id + 1
        digest = hashlib.sha256(body).hexdigest()
        self.jobs[job_id] = FakeJob(
            job_id=job_id,
            operation=operation,
            items=tuple(items),
            outcomes=outcomes,
            created_at=self.clock(),
            queue_delay=self.settings.queue_delay,
            processing_rate=self.settings.processing_rate,
            fail_at=fail_at,
            body_sha256=digest,
        )
        self.counts["jobs_created"] += 1
        self.created_bodies[digest] += 1
        return json_response(200, {"jobId": job_id})

    def _request_id(self) -> str:
        return str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))

    def timestamp(self, at: float) -> str:
        """Turn a clock reading into a UTC ISO 8601 ``Z`` timestamp.

        :param at: clock reading.
        :return: the timestamp.
        """
        return iso_timestamp(self._wall0 + self.settings.wall_offset + (at - self._clock0))


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )
