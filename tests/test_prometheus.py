"""``gameball_async.prometheus.GameballCollector``: the stats as Prometheus
metrics in one line (issue 17 §2)."""

from __future__ import annotations

import gc
import weakref

import anyio
import attrs
import pytest
from _support import PATIENCE, cashbacks, session
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gameball_async import GameballSession, SessionStats
from gameball_async.prometheus import GameballCollector
from gameball_async.testing import FakeGameball, InjectedReply

pytestmark = pytest.mark.anyio


def scrape(registry: CollectorRegistry) -> dict[str, tuple[str, dict[str, str], float]]:
    """Each sample of a scrape: its family's type, its labels and its value, by name."""
    text = generate_latest(registry).decode()
    return {
        sample.name: (family.type, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")  # counters' creation times
    }


def expected(stats: SessionStats, namespace: str = "gameball") -> dict[str, float]:
    return {
        f"{namespace}_{name}" + ("" if name == "jobs_awaited" else "_total"): value
        for name, value in attrs.asdict(stats).items()
    }


async def test_one_scrape_shows_the_sessions_stats(fake: FakeGameball) -> None:
    registry = CollectorRegistry()
    async with session(fake) as gb:
        registry.register(GameballCollector(gb))
        fake.inject("create", InjectedReply(status=503))  # a retry to count
        job = await gb.create_batch("cashback", cashbacks(2))
        with anyio.fail_after(PATIENCE):
            await job
        stats = gb.stats()
        samples = scrape(registry)
    assert {name: value for name, (_, _, value) in samples.items()} == expected(stats)
    assert stats.retries == 1
    assert samples["gameball_requests_total"][0] == "counter"
    assert samples["gameball_limiter_wait_seconds_total"][0] == "counter"
    assert samples["gameball_jobs_awaited"][0] == "gauge"
    text = generate_latest(registry).decode()
    assert fake.api_key not in text
    assert fake.secret_key not in text


async def test_labels_and_namespace(gb: GameballSession) -> None:
    registry = CollectorRegistry()
    registry.register(GameballCollector(gb, namespace="loyalty", labels={"account": "eu"}))
    samples = scrape(registry)
    assert set(samples) == set(expected(gb.stats(), "loyalty"))
    assert {tuple(labels.items()) for _, labels, _ in samples.values()} == {(("account", "eu"),)}


async def test_a_session_not_opened_or_closed_scrapes(fake: FakeGameball) -> None:
    gb = GameballSession(fake.api_key, fake.secret_key, base_url=fake.base_url)
    registry = CollectorRegistry()
    registry.register(GameballCollector(gb))
    before = {name: value for name, (_, _, value) in scrape(registry).items()}
    assert before == expected(SessionStats())
    await gb.close()
    after = {name: value for name, (_, _, value) in scrape(registry).items()}
    assert after == expected(SessionStats())


def test_a_callable_is_not_read_when_registering_and_may_have_no_session() -> None:
    holder: list[GameballSession] = []

    def current() -> SessionStats | None:
        return holder[0].stats() if holder else None

    reads: list[None] = []

    def counted() -> SessionStats | None:
        reads.append(None)
        return current()

    registry = CollectorRegistry(auto_describe=True)
    registry.register(GameballCollector(counted))
    assert reads == []  # described, not collected
    assert scrape(registry) == {}
    text = generate_latest(registry).decode()
    assert "# TYPE gameball_requests_total counter" in text
    assert "# TYPE gameball_jobs_awaited gauge" in text
    assert len(reads) == 2


async def test_a_registered_session_is_not_kept_alive(fake: FakeGameball) -> None:
    registry = CollectorRegistry()
    gb = GameballSession(fake.api_key, fake.secret_key, base_url=fake.base_url)
    registry.register(GameballCollector(gb))
    assert scrape(registry)
    gone = weakref.ref(gb)
    del gb
    gc.collect()
    assert gone() is None
    assert scrape(registry) == {}


def test_two_sessions_need_two_namespaces() -> None:
    registry = CollectorRegistry()
    registry.register(GameballCollector(SessionStats))
    with pytest.raises(ValueError, match="Duplicated"):
        registry.register(GameballCollector(SessionStats))
    registry.register(GameballCollector(SessionStats, namespace="gameball_eu"))


@pytest.mark.parametrize(
    ("namespace", "labels"),
    [("9lives", None), ("game-ball", None), ("gameball", {"bad-label": "x"}), ("g", {"__x": "y"})],
)
def test_bad_names_are_refused(namespace: str, labels: dict[str, str] | None) -> None:
    with pytest.raises(ValueError, match="Prometheus"):
        GameballCollector(SessionStats, namespace=namespace, labels=labels)


def test_a_source_that_is_neither_is_refused() -> None:
    with pytest.raises(TypeError, match="GameballSession or a callable"):
        GameballCollector(42)  # type: ignore[arg-type]
