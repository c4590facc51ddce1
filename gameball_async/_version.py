"""The package version, in a module of its own so the transport can name it
in its User-Agent without importing the package's ``__init__``."""

from __future__ import annotations

from typing import Final

__all__ = ["__version__"]

__version__: Final = "0.1.0"
