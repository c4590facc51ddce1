"""Many processes on one Gameball account, coordinated on Redis.

Needs the ``redis`` extra (``pip install "gameball_async[redis]"``); this is
the only part of the package that imports ``redis``.
"""

from __future__ import annotations

__all__: list[str] = []
