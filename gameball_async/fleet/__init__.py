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
"""

from __future__ import annotations

from ._fleet import RedisFleet

__all__ = ["RedisFleet"]

RedisFleet.__module__ = __name__
