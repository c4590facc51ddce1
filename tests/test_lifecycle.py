"""Lifecycle mistakes get a GameballError that says what happened and what to
do (issue 9 point 16): a borrowed aiohttp session closed by its owner, a
session used on a second event loop, a nested ``async with``."""

from __future__ import annotations

import asyncio
import gc
import warnings

import aiohttp
import pytest
from _support import QUIET_FAKE, make_session

from gameball_async import GameballError, GameballSession, SessionClosedError
from gameball_async.testing import FakeGameball

ITEMS = [{"customerId": "c1"}]


def _session(
    fake: FakeGameball, http_session: aiohttp.ClientSession | None = None
) -> GameballSession:
    return make_session(fake, http_session=http_session)


@pytest.mark.anyio
async def test_a_borrowed_session_closed_by_its_owner(fake: FakeGameball) -> None:
    lent = aiohttp.ClientSession()
    async with _session(fake, lent) as gb:
        job = await gb.create_batch("balance-inquiry", ITEMS)
        await lent.close()
        for call in (
            lambda: gb.get_status(job.job_id),
            lambda: gb.stop(job.job_id),
            lambda: gb.create_batch("balance-inquiry", ITEMS),
        ):
            with pytest.raises(SessionClosedError) as info:
                await call()
            text = str(info.value)
            assert "http_session" in text
            assert "closed by its owner" in text
    assert fake.counts["create"] == 1


@pytest.mark.anyio
async def test_a_nested_async_with_is_refused_at_entry(fake: FakeGameball) -> None:
    async with _session(fake) as gb:
        with pytest.raises(GameballError, match="already entered"):
            async with gb:
                pass  # pragma: no cover - never entered
        # the outer block's session is still open
        job = await gb.create_batch("balance-inquiry", ITEMS)
        assert (await gb.get_status(job.job_id)).job_id == job.job_id
    assert gb.closed


def _run_collecting_resource_warnings(*runs: object) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for run in runs:
            asyncio.run(run)  # type: ignore[arg-type]
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_second_event_loop_is_refused_without_resource_warnings() -> None:
    sessions: list[GameballSession] = []
    refusals: list[BaseException] = []

    async def first() -> None:
        async with FakeGameball(**QUIET_FAKE) as server:
            gb = _session(server)
            sessions.append(gb)
            await gb.create_batch("balance-inquiry", ITEMS)  # and never closed

    async def second() -> None:
        async with FakeGameball(**QUIET_FAKE):
            for call in (
                lambda: sessions[0].create_batch("balance-inquiry", ITEMS),
                lambda: sessions[0].get_status("1"),
            ):
                try:
                    await call()
                except GameballError as exc:
                    refusals.append(exc)

    leaks = _run_collecting_resource_warnings(first(), second())
    assert leaks == []
    assert len(refusals) == 2
    for refusal in refusals:
        assert isinstance(refusal, SessionClosedError)
        assert "belongs to the event loop" in str(refusal)
    assert sessions[0].closed


def test_a_session_never_closed_leaves_nothing_open_when_its_loop_ends() -> None:
    async def forgetful() -> None:
        async with FakeGameball(**QUIET_FAKE) as server:
            gb = _session(server)
            await gb.create_batch("balance-inquiry", ITEMS)

    assert _run_collecting_resource_warnings(forgetful()) == []
