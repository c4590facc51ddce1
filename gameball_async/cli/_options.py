"""What a ``gameball-batch submit`` or ``resume`` run is asked to do, and with what.

The options of both commands, the factory that makes the run's session, and
the error a command-line mistake raises (exit code 2). Plain values, shared by
the argument parser, the passes and the demo.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from gameball_async import GameballSession, Operation

__all__ = [
    "POLLS_IN_FLIGHT",
    "Observer",
    "ResumeOptions",
    "SessionFactory",
    "SubmitOptions",
    "UsageError",
]

#: Status polls in flight for the CLI's sessions. A finished job's status
#: carries every item's result (~2 MB decoded for 1,000 items): few at once keep
#: the peak memory flat, and 4 already reach the rate limit (30 requests/s).
POLLS_IN_FLIGHT: Final = 4

#: Makes the session, given the base URL a manifest recorded (``None`` for submit).
SessionFactory = Callable[["str | None"], GameballSession]
Observer = Callable[[Mapping[str, Any]], None]


class UsageError(Exception):
    """A command-line mistake (exit code 2); the message says what to do."""


@attrs.frozen(kw_only=True)
class SubmitOptions:
    """What ``gameball-batch submit`` was asked to do."""

    operation: Operation
    input: str
    format: str | None = None
    results: Path | None = None
    manifest: Path | None = None
    rejects: Path | None = None
    skip_invalid: bool = False
    chunk_size: int = 1000
    concurrency: int = 4
    max_pending: int = 200
    stop_on_interrupt: bool = False
    force: bool = False
    max_errors: int = 20


@attrs.frozen(kw_only=True)
class ResumeOptions:
    """What ``gameball-batch resume`` was asked to do."""

    manifest: Path
    input: Path | None = None
    concurrency: int = 4
    max_pending: int = 200
    stop_on_interrupt: bool = False
