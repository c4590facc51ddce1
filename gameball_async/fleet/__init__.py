"""Many processes on one Gameball account, coordinated on Redis.

Needs the ``redis`` extra (``pip install "gameball_async[redis]"``); this is
the only part of the package that imports ``redis``::

    from gameball_async import GameballSession
    from gameball_async.fleet import RedisFleet

    async with RedisFleet.from_url("redis://127.0.0.1:6379/0", expected_processes=8) as fleet:
        async with GameballSession(api_key, secret_key, fleet=fleet) as gb:
            job = await gb.create_batch("cashback", items, idempotency_key="nightly/17")
            status = await job
        tokens = await fleet.open_jobs()
        view = await fleet.snapshot()        # a read-only FleetSnapshot (gameball-batch fleet)
"""

from __future__ import annotations

from ._fleet import RedisFleet
from ._snapshot_types import (
    SNAPSHOT_VERSION,
    EndedJob,
    FleetSnapshot,
    JobProgress,
    LimiterView,
    LiveProcess,
    OpenJob,
)

__all__ = [
    "SNAPSHOT_VERSION",
    "EndedJob",
    "FleetSnapshot",
    "JobProgress",
    "LimiterView",
    "LiveProcess",
    "OpenJob",
    "RedisFleet",
]

RedisFleet.__module__ = __name__
for _public in (EndedJob, FleetSnapshot, JobProgress, LimiterView, LiveProcess, OpenJob):
    _public.__module__ = __name__
del _public
