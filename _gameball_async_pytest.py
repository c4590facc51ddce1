"""pytest plugin of ``gameball_async``: the ``fake_gameball`` fixtures.

Registered through the ``pytest11`` entry point (``-p no:gameball_async``
disables it). This module sits outside the ``gameball_async`` package on
purpose: importing anything inside the package imports the whole SDK and
aiohttp first, and pytest loads every installed plugin on every run. Here
nothing is imported until a test asks for a fixture, so the plugin costs
nothing in a run that does not use it, and a broken SDK install fails only
the tests that use the fake.

Each fixture gives a :class:`gameball_async.testing.FakeGameball` that serves
from its own thread and event loop, so it is a plain synchronous fixture and
works the same under pytest-asyncio (strict or auto mode), the anyio plugin,
and in synchronous tests. The fake's methods and properties are safe to use
from the test (they run on the fake's loop); it is closed after the test.

``fake_gameball``: a fake with default settings, or those of the closest
``fake_gameball`` marker (markers on the module or class give defaults that
a closer one overrides)::

    import pytest
    from gameball_async import GameballSession

    @pytest.mark.asyncio  # or @pytest.mark.anyio, or nothing in auto mode
    async def test_sync(fake_gameball):
        async with GameballSession(
            fake_gameball.api_key, fake_gameball.secret_key, base_url=fake_gameball.base_url
        ) as gb:
            job = await gb.create_batch("balance-inquiry", [{"customerId": "c1"}])
            assert (await job).finished_count == 1
        assert fake_gameball.counts["create"] == 1

The marker takes :class:`~gameball_async.testing.FakeGameball`'s keyword
arguments: ``settings=`` a :class:`~gameball_async.testing.FakeSettings`, and
any of its fields, which override those of ``settings``. The ones tests reach
for most: ``processing_rate`` (items per
second per job), ``queue_delay``, ``customers`` (a mapping of id to balance,
or ids: only these customers exist and items of any other fail with 7000),
``faults`` (a :class:`~gameball_async.testing.Faults`, or a mapping of its
fields), ``seed`` and ``failed_job_rate``::

    @pytest.mark.fake_gameball(
        processing_rate=50,
        customers={"c1": 100.0, "c2": 0.0},
        faults={"http_503": 0.2, "routes": ["status"]},
    )
    def test_flaky_upstream(fake_gameball):
        ...

``fake_gameball_factory``: call it with the same settings to get as many
fakes as a test needs (two regions, a before and after); each is started
at once and closed after the test::

    from gameball_async.testing import FakeSettings

    def test_two_fakes(fake_gameball_factory):
        slow = fake_gameball_factory(processing_rate=5)
        strict = fake_gameball_factory(FakeSettings(customers=["c1"]), seed=7)
        ...

A fake's settings can also change while the test runs: ``fake.faults =
Faults(...)``, ``fake.add_customer(...)``, ``fake.inject(...)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from gameball_async.testing import FakeGameball
    from gameball_async.testing._pytest_plugin import FakeGameballFactory

__all__ = ["fake_gameball", "fake_gameball_factory", "pytest_configure"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``fake_gameball`` marker (for ``--strict-markers``).

    :param config: the pytest configuration.
    """
    config.addinivalue_line(
        "markers",
        "fake_gameball(**settings): FakeGameball keyword arguments for the "
        "fake_gameball fixture (settings=FakeSettings(...), processing_rate, "
        "customers, faults, ...)",
    )


@pytest.fixture
def fake_gameball_factory() -> Iterator[FakeGameballFactory]:
    """A function ``(settings=None, **overrides) -> FakeGameball`` starting fakes.

    ``settings`` is a :class:`~gameball_async.testing.FakeSettings` and
    ``overrides`` are :class:`~gameball_async.testing.FakeGameball`'s keyword
    arguments (fields of ``FakeSettings`` replacing those of ``settings``;
    ``faults`` may be a mapping of :class:`~gameball_async.testing.Faults`
    fields). Each fake serves from its own thread; all are closed after the test.

    :return: the factory (yielded).
    """
    from gameball_async.testing._pytest_plugin import FakeGameballFactory  # noqa: PLC0415

    with FakeGameballFactory() as factory:
        yield factory


@pytest.fixture
def fake_gameball(
    request: pytest.FixtureRequest, fake_gameball_factory: FakeGameballFactory
) -> FakeGameball:
    """A running :class:`~gameball_async.testing.FakeGameball`, closed after the test.

    Its settings come from the ``fake_gameball`` markers on the test (the
    closest wins, key by key), else the defaults. It serves from its own
    thread, so sync tests and every async test runner can use it.

    :param request: the pytest request (for the markers).
    :param fake_gameball_factory: makes and closes the fake.
    :return: the running fake.
    """
    from gameball_async.testing._pytest_plugin import marker_settings  # noqa: PLC0415

    return fake_gameball_factory(**marker_settings(request.node))
