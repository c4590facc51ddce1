"""Shared pieces of the benchmarks: the fake server process and statistics."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from typing import Any

__all__ = ["FakeProcess", "machine", "spread", "summary"]


class FakeProcess:
    """``python -m gameball_async.testing serve`` in a child process."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gameball_async.testing", "serve", *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.base_url: str = info["base_url"]
        self.api_key: str = info["api_key"]
        self.secret_key: str = info["secret_key"]
        self.origin = self.base_url.split("/api/", 1)[0]

    def stats(self) -> dict[str, Any]:
        """The fake's counters."""
        with urllib.request.urlopen(f"{self.origin}/_fake/stats", timeout=10) as reply:
            data: dict[str, Any] = json.loads(reply.read())
        return data

    def reset(self) -> None:
        """Clear the fake's counters and rate-limit windows (jobs are kept)."""
        request = urllib.request.Request(f"{self.origin}/_fake/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def close(self) -> None:
        """Stop the child process."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> FakeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


def summary(values: Sequence[float], digits: int = 2) -> str:
    """``median (min-max)`` for a table cell."""
    s = spread(values)
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def machine() -> str:
    """One line about the machine the figures came from."""
    import os

    return (
        f"{os.cpu_count()} cores {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )
