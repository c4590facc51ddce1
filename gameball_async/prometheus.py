"""A Prometheus collector of a session's :meth:`~gameball_async.GameballSession.stats`.

Needs ``prometheus_client`` (the ``prometheus`` extra); nothing else in the
package imports it. One line registers a session::

    from prometheus_client import REGISTRY
    from gameball_async.prometheus import GameballCollector

    REGISTRY.register(GameballCollector(gb))

An application that opens its session at startup can register at import time
with a callable returning the current stats (or ``None`` while there is no
session)::

    REGISTRY.register(GameballCollector(lambda: gb.stats() if gb else None))

Every field of :class:`~gameball_async.SessionStats` becomes one metric named
``<namespace>_<field>``: ``jobs_awaited`` a gauge, the others counters, which
``prometheus_client`` exposes with the ``_total`` suffix
(``gameball_requests_total``, ``gameball_limiter_wait_seconds_total``...).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ._session import GameballSession
from ._stats import STATS_FIELDS, SessionStats

__all__ = ["DEFAULT_NAMESPACE", "GameballCollector"]

DEFAULT_NAMESPACE: Final = "gameball"
"""The prefix of every metric name, unless ``namespace=`` says otherwise."""

# metric name prefixes and label names (no colons: those are for recording rules)
_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

#: What a collector reads: the stats now, or ``None`` when there is no session yet.
StatsSource = Callable[[], "SessionStats | None"]


class GameballCollector:
    """A ``prometheus_client`` custom collector of one session's counters.

    Each scrape reads one :meth:`GameballSession.stats` snapshot, so the
    metrics of a scrape agree with each other. A session not opened yet, or
    closed, still has stats (its counters stay as they were), so a scrape never
    raises for it.

    :param source: the session (held weakly: once it is gone the metrics carry
        no sample), or a callable returning its current
        :class:`~gameball_async.SessionStats` (``None`` while there is no
        session: the metrics are then described but carry no sample).
    :param namespace: the prefix of every metric name.
    :param labels: constant labels on every sample, e.g. ``{"account": "eu"}``.
        Several sessions in one registry need one namespace each: a registry
        refuses two collectors of the same metric names.
    :raises ValueError: for a namespace or a label name Prometheus refuses.
    """

    def __init__(
        self,
        source: GameballSession | StatsSource,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        if not _NAME.fullmatch(namespace):
            raise ValueError(f"namespace {namespace!r} is not a Prometheus metric name prefix")
        labels = dict(labels or {})
        for name in labels:
            if not _NAME.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"{name!r} is not a Prometheus label name")
        if isinstance(source, GameballSession):
            # a registry lives as long as the application: it must not keep a session alive
            held = weakref.ref(source)

            def read() -> SessionStats | None:
                session = held()
                return None if session is None else session.stats()

            self._read: StatsSource = read
        elif callable(source):
            self._read = source
        else:
            raise TypeError(
                f"source must be a GameballSession or a callable returning its stats, "
                f"not {type(source).__name__}"
            )
        self._namespace = namespace
        self._label_names = list(labels)
        self._label_values = list(labels.values())

    def describe(self) -> Iterator[Metric]:
        """The metrics this collector exposes, without samples.

        ``prometheus_client`` calls it when the collector is registered, so
        registering reads no stats (a callable source may not work yet).
        """
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        """One metric family per stats field, from one snapshot read now."""
        return self._families(self._read())

    def _families(self, stats: SessionStats | None) -> Iterator[Metric]:
        for field in STATS_FIELDS:
            kind = GaugeMetricFamily if field.gauge else CounterMetricFamily
            family = kind(
                f"{self._namespace}_{field.name}",
                f"gameball_async: {field.help}",
                labels=self._label_names,
            )
            if stats is not None:
                family.add_metric(self._label_values, getattr(stats, field.name))
            yield family
