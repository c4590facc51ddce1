"""An outage of status polls, logged once when it starts and once when it ends."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

__all__ = ["Outage"]

logger: Final = logging.getLogger("gameball_async")


class Outage:
    """Tracks failing status polls so that an outage is one WARNING (at its first
    failure) and one INFO (at the first success after it), not a line per poll.

    :param clock: monotonic clock, for the outage's length.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._since: float | None = None
        self._failures = 0

    def failed(self, failure: Exception) -> None:
        """A poll failed transiently."""
        self._failures += 1
        if self._since is None:
            self._since = self._clock()
            logger.warning(
                "gameball_async: status polls are failing (%s); "
                "waits keep polling with backoff until their own deadlines",
                failure,
            )

    def ended(self) -> None:
        """A poll succeeded: an outage in progress is over."""
        if self._since is None:
            return
        logger.info(
            "gameball_async: status polls recovered after %d failed polls in %.1f s",
            self._failures,
            self._clock() - self._since,
        )
        self._since = None
        self._failures = 0
