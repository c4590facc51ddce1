"""Run the fake Gameball Batch API in its own process.

Usage::

    python -m gameball_async.testing serve [--port 0] [--processing-rate 1000] ...

Once listening it prints one JSON line to stdout,
``{"base_url": ..., "api_key": ..., "secret_key": ...}``, then serves until
SIGTERM or SIGINT and exits with status 0. Counters are at
``GET <origin>/_fake/stats``; ``POST <origin>/_fake/reset`` clears them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from ._faults import Faults
from ._server import FakeGameball

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser.

    :return: an :class:`argparse.ArgumentParser` with the ``serve`` command.
    """
    parser = argparse.ArgumentParser(
        prog="python -m gameball_async.testing",
        description="Fake Gameball Batch API server for tests and benchmarks.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve until SIGTERM/SIGINT")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve.add_argument("--api-key", default="test-api-key")
    serve.add_argument("--secret-key", default="test-secret-key")
    serve.add_argument("--processing-rate", type=float, default=1000.0, help="items/s per job")
    serve.add_argument("--queue-delay", type=float, default=0.05, help="seconds Queued")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--no-rate-limit", action="store_true", help="never reply 429")
    serve.add_argument("--rate-per-second", type=int, default=30)
    serve.add_argument("--rate-per-window", type=int, default=360)
    serve.add_argument("--rate-window", type=float, default=30.0)
    serve.add_argument("--status-shape", choices=("guide", "openapi", "mixed"), default="guide")
    serve.add_argument("--failed-job-rate", type=float, default=0.0)
    serve.add_argument("--customers-must-exist", action="store_true")
    serve.add_argument("--latency", type=float, nargs=2, metavar=("MIN", "MAX"), default=(0.0, 0.0))
    for kind in ("429", "500", "503", "drop", "slow", "malformed", "unknown-status"):
        serve.add_argument(f"--fault-{kind}", type=float, default=0.0, metavar="P")
    serve.add_argument("--slow-seconds", type=float, default=1.0)
    serve.add_argument(
        "--wall-offset", type=float, default=0.0, metavar="S", help="server clock skew, seconds"
    )
    serve.add_argument("--no-started-at", action="store_true", help="omit startedAt")
    return parser


def _fake_from_args(args: argparse.Namespace) -> FakeGameball:
    faults = Faults(
        http_429=args.fault_429,
        http_500=args.fault_500,
        http_503=args.fault_503,
        drop=args.fault_drop,
        slow=args.fault_slow,
        malformed_json=args.fault_malformed,
        unknown_status=args.fault_unknown_status,
        slow_seconds=args.slow_seconds,
        latency=tuple(args.latency),
    )
    return FakeGameball(
        api_key=args.api_key,
        secret_key=args.secret_key,
        host=args.host,
        port=args.port,
        processing_rate=args.processing_rate,
        queue_delay=args.queue_delay,
        faults=faults,
        seed=args.seed,
        enforce_rate_limit=not args.no_rate_limit,
        rate_per_second=args.rate_per_second,
        rate_per_window=args.rate_per_window,
        rate_window=args.rate_window,
        customers_must_exist=args.customers_must_exist,
        status_shape=args.status_shape,
        failed_job_rate=args.failed_job_rate,
        wall_offset=args.wall_offset,
        report_started_at=not args.no_started_at,
    )


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
