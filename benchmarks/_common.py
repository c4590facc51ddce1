"""Shared pieces of the benchmarks: their command line, the fake server process, statistics."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["FakeProcess", "add_quick", "machine", "run_main", "section_main", "spread", "summary"]


def run_main(
    description: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], object],
    run: Callable[[argparse.Namespace], object],
) -> None:
    """The command line every benchmark shares: parse its arguments, then run it.

    :param description: the ``--help`` description; only its first line is used,
        so a module passes its ``__doc__``.
    :param add_arguments: adds the benchmark's own options to the parser.
    :param run: runs the benchmark with the parsed arguments.
    """
    first_line = (description or "").strip().split("\n", 1)[0]
    parser = argparse.ArgumentParser(description=first_line)
    add_arguments(parser)
    run(parser.parse_args())


def add_quick(parser: argparse.ArgumentParser) -> None:
    """The ``--quick`` option of every section."""
    parser.add_argument("--quick", action="store_true")


def section_main(description: str | None, run: Callable[[bool], Mapping[str, Any]]) -> None:
    """``python -m benchmarks.NAME [--quick]``: one section alone, its figures printed as JSON.

    :param run: the section's ``run(quick)``, as ``python -m benchmarks`` calls it.
    """
    run_main(description, add_quick, lambda args: print(json.dumps(run(args.quick), indent=2)))


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


@contextmanager
def pure_json() -> Iterator[None]:
    """The package's JSON codec made the stdlib's while in the block, orjson installed or not.

    Lets one run measure the default install beside the ``speedups`` extra.
    """
    from gameball_async import _decode, _decode_items, _json, _wire

    saved = (_wire._encode, _decode._loads, _decode_items._loads)
    _wire._encode = _json.make_dumps(_wire._json_default, fast=False)
    _decode._loads = _decode_items._loads = _json.make_loads(fast=False)
    try:
        yield
    finally:
        _wire._encode, _decode._loads, _decode_items._loads = saved
