"""The package version: the one source that the build metadata reads too.

A module of its own, so the transport can name it in its User-Agent without
importing the package's ``__init__``.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
