"""The ``gameball-batch`` command (also ``python -m gameball_async``).

An application on top of the SDK: it uses the package's public names and the
one documented seam (``gameball_async._seam``), and nothing of the SDK imports
it. ``rich`` (the ``cli`` extra) is imported only once a command runs, so
importing this package never needs it.

:func:`main` is the console script; :func:`run` is the same command as a
coroutine, for embedding and tests; :func:`build_parser` its argument parser.
"""

from __future__ import annotations

from ._main import main, run
from ._parser import build_parser

__all__ = ["build_parser", "main", "run"]
