"""The ``gameball_async`` logger, and the ``GAMEBALL_LOG`` switch.

What an operator needs goes to INFO and WARNING (a 429 pause and its length, a
creation that may have landed, an outage of status polls and its end, giving
up after retries); each request goes to DEBUG (method, route, status, time).
No record ever carries a key. ``GAMEBALL_LOG=debug`` or ``info`` in the
environment turns the logger on without code, as openai's ``OPENAI_LOG`` and
stripe's ``STRIPE_LOG`` do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Final

__all__ = ["LOGGER_NAME", "setup_from_env"]

#: The name of the package's one logger.
LOGGER_NAME: Final = "gameball_async"

_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO}
_FORMAT: Final = "[%(asctime)s %(name)s %(levelname)s] %(message)s"


def setup_from_env(environ: Mapping[str, str] = os.environ) -> int | None:
    """Apply ``GAMEBALL_LOG`` (``debug`` or ``info``, any case), if set.

    Sets the level of the ``gameball_async`` logger and, when the application
    has configured no logging at all, a plain stderr handler (as
    :func:`logging.basicConfig` does). Any other value is ignored.

    :return: the level set, or ``None``.
    """
    level = _LEVELS.get(environ.get("GAMEBALL_LOG", "").strip().lower())
    if level is None:
        return None
    logging.basicConfig(format=_FORMAT)  # does nothing if the root has handlers
    logging.getLogger(LOGGER_NAME).setLevel(level)
    return level
