"""How a ``gameball-batch`` run ends: its exit codes, and the rule that picks one.

The rule reads two things only: what the engine reports of the run (a
:class:`RunOutcome`) and the outcome counts of the whole results file. It does
no I/O, so every case is a unit test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from ._track import NOT_SUBMITTED, SUCCEEDED, UNKNOWN

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_SUBMISSION",
    "EXIT_USAGE",
    "MEANINGS",
    "RunOutcome",
    "exit_code",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INVALID: Final = 3
EXIT_SUBMISSION: Final = 4
EXIT_INTERRUPTED: Final = 130

#: What each exit code of ``submit`` and ``resume`` says, for the summary.
MEANINGS: Final = {
    EXIT_OK: "every record succeeded",
    EXIT_FAILED: "some records failed, were not processed or were rejected",
    EXIT_INVALID: "invalid input, nothing was sent",
    EXIT_SUBMISSION: "some records were not sent, may not have been, or are not settled yet",
    EXIT_INTERRUPTED: "interrupted",
}


@attrs.frozen(kw_only=True)
class RunOutcome:
    """What the engine learned about one ``submit`` or ``resume`` run, once it is over.

    :ivar interrupted: the run was interrupted (Ctrl-C, or the ``interrupt`` event).
    :ivar stopped_by: why submitting stopped early (an error message), if it did.
    :ivar released: records certainly not sent, left for ``resume``.
    :ivar lost: jobs whose outcome could not be learned (polling failed).
    :ivar exhausted: the reader reached the end of its input.
    """

    interrupted: bool = False
    stopped_by: str | None = None
    released: int = 0
    lost: int = 0
    exhausted: bool = False

    @property
    def all_sent(self) -> bool:
        """Every record read went into a chunk: nothing is left for ``resume`` to send."""
        return self.exhausted and self.stopped_by is None and self.released == 0

    @property
    def troubled(self) -> bool:
        """Submitting stopped early, records were left unsent, or jobs were lost."""
        return self.stopped_by is not None or self.released > 0 or self.lost > 0


def exit_code(run: RunOutcome | None, outcomes: Mapping[str, int], *, expected: int) -> int:
    """The exit code of a ``submit`` or ``resume`` run.

    :param run: what the engine reports, or ``None`` when it never ran.
    :param outcomes: outcome counts over the whole results file.
    :param expected: records in the input, valid and rejected.
    :return: :data:`EXIT_INTERRUPTED` when interrupted; else
        :data:`EXIT_SUBMISSION` when a record has no outcome, was not
        submitted, has an unknown outcome, or the run was troubled; else
        :data:`EXIT_OK` when every record succeeded; else :data:`EXIT_FAILED`.
    """
    missing = expected - sum(outcomes.values())
    if run is not None and run.interrupted:
        return EXIT_INTERRUPTED
    unsettled = outcomes.get(NOT_SUBMITTED, 0) or outcomes.get(UNKNOWN, 0)
    if missing > 0 or unsettled or (run is not None and run.troubled):
        return EXIT_SUBMISSION
    if outcomes.get(SUCCEEDED, 0) == expected:
        return EXIT_OK
    return EXIT_FAILED
