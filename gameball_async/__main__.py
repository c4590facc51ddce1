"""``python -m gameball_async``: the ``gameball-batch`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
