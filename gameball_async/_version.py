"""The package version: the one source that the build metadata reads too."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
