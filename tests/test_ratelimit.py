"""Tests of gameball_async._ratelimit: RateLimit, next_slot and LocalRateLimiter (fake clock)."""

from __future__ import annotations

import bisect
import types
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _support import ManualClock, until

from gameball_async import RateLimit, _ratelimit
from gameball_async._ratelimit import LocalRateLimiter, next_slot


class VirtualTime(ManualClock):
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        super().__init__(1000.0)
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.advance(seconds)
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def vtime(monkeypatch: pytest.MonkeyPatch) -> VirtualTime:
    clock = VirtualTime()
    # Only the limiter's module sees the virtual sleep; anyio itself is untouched.
    fake_anyio = types.SimpleNamespace(sleep=clock.sleep, Lock=anyio.Lock, Event=anyio.Event)
    monkeypatch.setattr(_ratelimit, "anyio", fake_anyio)
    return clock


def _max_in(times: Sequence[float], window: float) -> int:
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0
    )


class TestRateLimit:
    def test_defaults_are_the_documented_limits(self) -> None:
        limit = RateLimit()
        assert (limit.per_second, limit.per_window, limit.window) == (30, 360, 30.0)
        assert limit.enabled
        assert not RateLimit.disabled().enabled

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"per_second": 0},
            {"per_second": -3},
            {"per_second": 1.5},
            {"per_window": 0},
            {"window": 0},
            {"window": -1.0},
            {"window": float("inf")},
            {"window": float("nan")},
            {"margin": -0.1},
            {"margin": float("inf")},
        ],
    )
    def test_validation(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            RateLimit(**kwargs)


class TestNextSlot:
    def test_free_while_under_the_limit(self) -> None:
        assert next_slot([], 3, 1.0, now=5.0) == 5.0
        assert next_slot([4.9, 4.95], 3, 1.0, now=5.0) == 5.0

    def test_full_window_waits_for_the_oldest_to_expire(self) -> None:
        assert next_slot([4.2, 4.5, 4.9], 3, 1.0, now=5.0) == pytest.approx(5.2)
        # only the last `limit` sends matter
        assert next_slot([1.0, 4.5, 4.9], 2, 1.0, now=5.0) == pytest.approx(5.5)

    def test_expired_window_is_now(self) -> None:
        assert next_slot([1.0, 2.0, 3.0], 3, 1.0, now=5.0) == 5.0


class TestLocalRateLimiter:
    @pytest.mark.anyio
    async def test_never_more_than_the_limit_in_any_window(self, vtime: VirtualTime) -> None:
        limit = RateLimit(per_second=7, per_window=20, window=5.0, margin=0.0)
        limiter = LocalRateLimiter(limit, clock=vtime)
        sent: list[float] = []

        async def one() -> None:
            await limiter.acquire()
            sent.append(vtime())

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(one)
        assert len(sent) == 100
        assert _max_in(sent, 1.0) == 7
        assert _max_in(sent, 5.0) == 20
        # and none waited longer than both windows required (greedy schedule)
        for i in range(1, len(sent)):
            earliest = max(
                sent[i - 1],
                sent[i - 7] + 1.0 if i >= 7 else sent[0],
                sent[i - 20] + 5.0 if i >= 20 else sent[0],
            )
            assert sent[i] == pytest.approx(earliest)

    @pytest.mark.anyio
    async def test_margin_widens_the_windows(self, vtime: VirtualTime) -> None:
        limiter = LocalRateLimiter(
            RateLimit(per_second=3, per_window=100, margin=0.25), clock=vtime
        )
        sent: list[float] = []
        for _ in range(10):
            await limiter.acquire()
            sent.append(vtime())
        assert _max_in(sent, 1.25) == 3

    @pytest.mark.anyio
    async def test_first_come_first_served(self, vtime: VirtualTime) -> None:
        limiter = LocalRateLimiter(RateLimit(per_second=2, per_window=1000), clock=vtime)
        order: list[int] = []

        async def one(number: int) -> None:
            await limiter.acquire()
            order.append(number)

        async with anyio.create_task_group() as tg:
            for number in range(30):
                tg.start_soon(one, number)
        assert order == list(range(30))
        assert vtime.sleeps  # some had to wait

    @pytest.mark.anyio
    async def test_pause_holds_every_request(self, vtime: VirtualTime) -> None:
        limiter = LocalRateLimiter(RateLimit(), clock=vtime)
        assert limiter.delay(vtime()) == 0.0
        limiter.pause(4.0)
        assert limiter.delay(vtime()) == pytest.approx(4.0)
        limiter.pause(1.0)  # a shorter pause does not shorten it
        assert limiter.delay(vtime()) == pytest.approx(4.0)
        start = vtime()
        await limiter.acquire()
        assert vtime() - start == pytest.approx(4.0)

    @pytest.mark.anyio
    async def test_disabled_never_waits(self, vtime: VirtualTime) -> None:
        limiter = LocalRateLimiter(RateLimit.disabled(), clock=vtime)
        limiter.pause(100.0)
        for _ in range(1000):
            await limiter.acquire()
        assert vtime.sleeps == []
        assert limiter.limit == RateLimit.disabled()

    @pytest.mark.anyio
    async def test_slot_held_until_the_reply(self, vtime: VirtualTime) -> None:
        limiter = LocalRateLimiter(RateLimit(per_second=3, per_window=100, margin=0.0), clock=vtime)
        held = [limiter.slot() for _ in range(3)]
        for slot in held:
            await slot.__aenter__()
        assert limiter.delay(vtime()) == float("inf")  # all three in flight
        went: list[float] = []
        done = anyio.Event()

        async def fourth() -> None:
            async with limiter.slot():
                went.append(vtime())
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(fourth)
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            assert went == []  # no amount of time frees a slot whose reply is pending
            assert vtime.sleeps == []
            vtime.now += 5.0  # a slow reply arrives
            await held[0].__aexit__(None, None, None)
            with anyio.fail_after(5):
                await done.wait()
        # it counts from the reply, not from when its slot was taken
        assert went == [pytest.approx(1006.0)]
        for slot in held[1:]:
            await slot.__aexit__(None, None, None)

    @pytest.mark.anyio
    async def test_slot_released_on_error_and_cancellation(self, vtime: VirtualTime) -> None:
        limiter = LocalRateLimiter(RateLimit(per_second=2, per_window=100, margin=0.0), clock=vtime)
        with pytest.raises(RuntimeError, match="request failed"):
            async with limiter.slot():
                raise RuntimeError("request failed")
        first, second = limiter.slot(), limiter.slot()
        with anyio.fail_after(5):
            await first.__aenter__()
            await second.__aenter__()
        async with anyio.create_task_group() as tg:

            async def third() -> None:
                async with limiter.slot():
                    pytest.fail("took a slot that was not free")

            tg.start_soon(third)
            await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()  # cancelled while waiting: takes nothing
        await first.__aexit__(None, None, None)
        await second.__aexit__(None, None, None)
        # nothing leaked: both slots can be held again (a leak would wait forever)
        again = [limiter.slot(), limiter.slot()]
        with anyio.fail_after(5):
            for slot in again:
                await slot.__aenter__()
        for slot in again:
            await slot.__aexit__(None, None, None)

    @pytest.mark.anyio
    async def test_acquire_waits_for_slots_in_flight(self, vtime: VirtualTime) -> None:
        limiter = LocalRateLimiter(RateLimit(per_second=1, per_window=100, margin=0.0), clock=vtime)
        slot = limiter.slot()
        await slot.__aenter__()
        acquired = anyio.Event()

        async def other() -> None:
            await limiter.acquire()
            acquired.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(other)
            await anyio.lowlevel.checkpoint()
            assert not acquired.is_set()
            await slot.__aexit__(None, None, None)
            with anyio.fail_after(5):
                await acquired.wait()
        assert vtime.sleeps == [pytest.approx(1.0)]

    @pytest.mark.anyio
    async def test_disabled_slot_never_waits(self, vtime: VirtualTime) -> None:
        limiter = LocalRateLimiter(RateLimit.disabled(), clock=vtime)
        for _ in range(100):
            async with limiter.slot():
                pass
        assert limiter.delay(vtime()) == 0.0

    def test_delay_is_zero_when_free(self) -> None:
        limiter = LocalRateLimiter(RateLimit(per_second=1, per_window=1), clock=lambda: 0.0)
        assert limiter.delay(0.0) == 0.0


class TestRoom:
    """``room()``: what the poll scheduler may hand out without a wait."""

    @pytest.mark.anyio
    async def test_room_is_what_both_windows_leave_less_the_requests_in_flight(
        self, vtime: VirtualTime
    ) -> None:
        limit = RateLimit(per_second=5, per_window=8, window=10.0, margin=0.0)
        limiter = LocalRateLimiter(limit, clock=vtime)
        assert limiter.room(vtime()) == 5
        for _ in range(3):
            await limiter.acquire()
        assert limiter.room(vtime()) == 2
        async with limiter.slot():
            assert limiter.room(vtime()) == 1  # a request in flight holds its slot
        assert limiter.room(vtime()) == 1  # and then counts as sent
        vtime.advance(1.0)  # the second's window is empty again; the long one holds 4
        assert limiter.room(vtime()) == 4
        for _ in range(4):
            await limiter.acquire()
        assert limiter.room(vtime()) == 0
        # room() and delay() agree on when a request may go
        assert limiter.delay(vtime()) > 0.0
        vtime.advance(limiter.delay(vtime()))
        room = limiter.room(vtime())
        assert room is not None
        assert room > 0
        assert limiter.delay(vtime()) == 0.0

    @pytest.mark.anyio
    async def test_room_is_none_for_a_limit_turned_off_and_nought_while_paused(
        self, vtime: VirtualTime
    ) -> None:
        assert LocalRateLimiter(RateLimit.disabled(), clock=vtime).room(vtime()) is None
        limiter = LocalRateLimiter(RateLimit(per_second=5, per_window=8), clock=vtime)
        limiter.pause(2.0)
        assert limiter.room(vtime()) == 0
        vtime.advance(2.0)
        assert limiter.room(vtime()) == 5

    @pytest.mark.anyio
    async def test_room_is_none_while_requests_queue_for_a_slot(self) -> None:
        # a poll handed out then joins the queue, first come first served, as
        # it always did: holding it back could starve it behind creations
        clock = ManualClock()  # stands still: the queued request waits until cancelled
        limiter = LocalRateLimiter(RateLimit(per_second=1, per_window=100), clock=clock)
        await limiter.acquire()
        assert limiter.room(clock()) == 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(limiter.acquire)
            await until(limiter._lock.locked)
            assert limiter.room(clock()) is None
            tg.cancel_scope.cancel()
        assert limiter.room(clock()) == 0
