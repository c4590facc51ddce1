"""Run the fake Gameball Batch API in its own process.

Usage::

    python -m gameball_async.testing serve [--port 0] [--processing-rate 1000] ...

Once listening it prints one JSON line to stdout,
``{"base_url": ..., "api_key": ..., "secret_key": ...}``, then serves until
SIGTERM or SIGINT and exits with status 0. Counters are at
``GET <origin>/_fake/stats``; ``POST <origin>/_fake/reset`` clears them.
There is one flag per :class:`FakeSettings` field (``--help`` lists them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from ._flags import add_arguments, from_namespace
from ._server import FakeGameball
from ._settings import FakeSettings

__all__ = ["build_parser", "main", "settings_from_args"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser.

    The ``serve`` flags are built from the fields of :class:`FakeSettings`
    (one per field, its :class:`Faults` as ``--fault-*``).

    :return: an :class:`argparse.ArgumentParser` with the ``serve`` command.
    """
    parser = argparse.ArgumentParser(
        prog="python -m gameball_async.testing",
        description="Fake Gameball Batch API server for tests and benchmarks.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve until SIGTERM/SIGINT",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(serve, FakeSettings)
    return parser


def settings_from_args(args: argparse.Namespace) -> FakeSettings:
    """The settings given by parsed ``serve`` flags.

    :param args: what :func:`build_parser` parsed.
    :return: the settings.
    :raises ValueError: on an invalid setting.
    """
    settings: FakeSettings = from_namespace(FakeSettings, args)
    return settings


def _fake_from_args(args: argparse.Namespace) -> FakeGameball:
    return FakeGameball(settings=settings_from_args(args))


async def serve(fake: FakeGameball) -> None:
    """Serve ``fake`` until SIGTERM or SIGINT, after printing its JSON line.

    :param fake: an unstarted fake.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        try:
            loop.add_signal_handler(signum, stop.set)
        except NotImplementedError:  # Windows: no loop signal handlers
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))
    try:
        async with fake:
            line = {
                "base_url": fake.base_url,
                "api_key": fake.api_key,
                "secret_key": fake.secret_key,
            }
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            await stop.wait()
    finally:
        for signum in signals:
            try:
                loop.remove_signal_handler(signum)
            except NotImplementedError:
                signal.signal(signum, signal.SIG_DFL)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m gameball_async.testing``.

    :param argv: arguments (default ``sys.argv[1:]``).
    :return: the exit status, 0 after a clean shutdown.
    """
    args = build_parser().parse_args(argv)
    try:
        fake = _fake_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(fake))
    return 0


if __name__ == "__main__":
    sys.exit(main())
