"""The ``gameball-batch`` command's front: arguments, dispatch, Ctrl-C.

:func:`main` is the console script; :func:`run` is the same command as a
coroutine, for embedding and tests. ``rich`` (the ``cli`` extra) is imported
only once a command runs, so ``import gameball_async`` never needs it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio

# The package's own version (one source), not a copy kept here.
from gameball_async import (
    DEFAULT_BASE_URL,
    GameballSession,
    InvalidJobIdError,
    Operation,
    PollPolicy,
    __version__,
)
from gameball_async._seam import MAX_BATCH_ITEMS

from ._exit import EXIT_INTERRUPTED, EXIT_USAGE
from ._options import POLLS_IN_FLIGHT, ResumeOptions, SessionFactory, SubmitOptions, UsageError
from ._submit import resume, submit

if TYPE_CHECKING:
    from ._display import ConsoleUI

__all__ = ["build_parser", "main", "run"]

T = TypeVar("T")

_API_KEY_ENV: Final = "GAMEBALL_API_KEY"
_SECRET_KEY_ENV: Final = "GAMEBALL_SECRET_KEY"
_BASE_URL_ENV: Final = "GAMEBALL_BASE_URL"
_NO_RICH: Final = (
    "gameball-batch needs the 'rich' package: install the CLI extra with\n"
    "    pip install 'gameball_async[cli]'"
)

_EPILOG: Final = f"""\
credentials:
  --api-key / --secret-key, or the environment variables {_API_KEY_ENV} and
  {_SECRET_KEY_ENV} (preferred: command-line flags show up in process lists).
  They are never printed. {_BASE_URL_ENV} sets the base URL.

exit codes (submit and resume):
  0    every record succeeded
  1    some records failed, were not processed, or were rejected (--skip-invalid)
  2    usage error (bad arguments, missing credentials, existing run files)
  3    invalid input: nothing was sent (bad records are listed with line and field)
  4    submission errors: some records were not sent, may have been sent
       (never resent), or have no outcome yet (run `resume`)
  130  interrupted (Ctrl-C; a second one aborts at once); `gameball-batch resume
       MANIFEST` finishes the run
status, stop and watch exit 0 when every job was read (watch: and completed with
no failed item), else 1.
"""


def _add_global_options(parser: argparse.ArgumentParser, *, sub: bool) -> None:
    # Accepted before and after the command; in the subcommand copy the
    # defaults are SUPPRESS so they never overwrite a value given before it.
    default: Any = argparse.SUPPRESS if sub else None
    parser.add_argument("--api-key", default=default, metavar="KEY",
                        help=f"API key (default: ${_API_KEY_ENV})")
    parser.add_argument("--secret-key", default=default, metavar="KEY",
                        help=f"secret key (default: ${_SECRET_KEY_ENV})")
    parser.add_argument("--base-url", default=default, metavar="URL",
                        help=f"API base URL (default: ${_BASE_URL_ENV} or {DEFAULT_BASE_URL})")
    parser.add_argument("--no-live", action="store_true",
                        default=argparse.SUPPRESS if sub else False,
                        help="plain output, no live display (the default when not a terminal)")
    # Poll faster than the API deserves: for tests and the fake server only.
    parser.add_argument("--poll-interval", type=_positive_float, default=default,
                        help=argparse.SUPPRESS)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _chunk_size(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_BATCH_ITEMS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BATCH_ITEMS:,}, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=_positive_int, default=4, metavar="N",
                        help="creation requests in flight at once (default 4)")
    parser.add_argument("--max-pending-jobs", type=_positive_int, default=200, metavar="N",
                        help="created jobs not yet finished before sending waits (default 200)")
    parser.add_argument("--stop-on-interrupt", action="store_true",
                        help="on Ctrl-C also stop the remote jobs (default: they keep running)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``gameball-batch``."""
    parser = argparse.ArgumentParser(
        prog="gameball-batch",
        description="Send bulk files to Gameball's Batch API and follow the jobs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, sub=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub = argparse.ArgumentParser(add_help=False)
    _add_global_options(sub, sub=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, parents=[sub], help=help_text, description=help_text, epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = command("submit", "validate a JSONL or CSV file, send it in batch jobs, record outcomes")
    p.add_argument("operation", choices=[op.value for op in Operation], metavar="OPERATION",
                   help=", ".join(op.value for op in Operation))
    p.add_argument("file", metavar="FILE", help="a .jsonl or .csv file, or - for stdin")
    p.add_argument("--format", choices=("jsonl", "csv"),
                   help="input format (default: by extension)")
    p.add_argument("--results", type=Path, metavar="PATH",
                   help="outcome of every record (default: FILE.results.jsonl)")
    p.add_argument("--manifest", type=Path, metavar="PATH",
                   help="job ids as they are created (default: FILE.manifest.jsonl)")
    p.add_argument("--rejects", type=Path, metavar="PATH",
                   help="invalid records (default: FILE.rejects.jsonl)")
    p.add_argument("--skip-invalid", action="store_true",
                   help="send the valid records and write the invalid ones to the rejects file")
    p.add_argument("--chunk-size", type=_chunk_size, default=MAX_BATCH_ITEMS, metavar="N",
                   help=f"records per job, 1-{MAX_BATCH_ITEMS:,} (default {MAX_BATCH_ITEMS:,})")
    p.add_argument("--max-errors", type=_positive_int, default=20, metavar="N",
                   help="invalid records shown (all go to the rejects file; default 20)")
    p.add_argument("--force", action="store_true",
                   help="overwrite the results and manifest of an earlier run")
    _add_run_options(p)

    p = command("resume", "reattach to the jobs of an interrupted run and finish its results")
    p.add_argument("manifest", type=Path, metavar="MANIFEST")
    p.add_argument("--input", type=Path, metavar="PATH",
                   help="the input file, if it moved (it must be unchanged)")
    _add_run_options(p)

    for name, text in (("status", "show the status of jobs"), ("stop", "stop jobs"),
                       ("watch", "follow jobs until they end")):
        p = command(name, text)
        p.add_argument("job_ids", nargs="+", metavar="JOB_ID")
        if name == "status":
            p.add_argument("--json", action="store_true", help="one JSON object per job")

    p = command("demo", "run a realistic fan-out against an embedded fake server")
    p.add_argument("--records", type=_positive_int, default=50_000, metavar="N",
                   help="cashback records (default 50,000)")
    p.add_argument("--jobs", type=_positive_int, default=50, metavar="N",
                   help="jobs to spread them over (default 50)")
    p.add_argument("--job-seconds", type=_positive_float, default=8.0, metavar="S",
                   help="how long the fake takes per job (default 8)")
    p.add_argument("--dir", type=Path, metavar="PATH",
                   help="where to write the files (default: a new temporary directory)")
    return parser


def _poll_policy(args: argparse.Namespace) -> PollPolicy:
    interval = args.poll_interval
    if interval is None:
        return PollPolicy()
    return PollPolicy(initial_delay=interval, min_delay=min(interval, 0.25),
                      max_delay=max(interval * 10, min(interval, 0.25)))


def _session_factory(args: argparse.Namespace, env: Mapping[str, str]) -> SessionFactory:
    def make(recorded_base_url: str | None) -> GameballSession:
        api_key = args.api_key or env.get(_API_KEY_ENV)
        secret_key = args.secret_key or env.get(_SECRET_KEY_ENV)
        if not api_key:
            raise UsageError(f"no API key: set {_API_KEY_ENV} or pass --api-key")
        if not secret_key:
            raise UsageError(f"no secret key: set {_SECRET_KEY_ENV} or pass --secret-key")
        # A manifest's jobs live where they were created: its URL beats the environment.
        base_url = (args.base_url or recorded_base_url or env.get(_BASE_URL_ENV)
                    or DEFAULT_BASE_URL)
        try:
            return GameballSession(api_key, secret_key, base_url=base_url,
                                   poll=_poll_policy(args), max_in_flight_polls=POLLS_IN_FLIGHT)
        except ValueError as exc:  # messages never hold the keys (see _session._check_key)
            raise UsageError(str(exc)) from None

    return make


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401, PLC0415 - only asks whether the extra is installed
    except ImportError:
        return False
    return True


async def run(
    argv: Sequence[str] | None = None,
    *,
    interrupt: anyio.Event | None = None,
    observer: Callable[[Mapping[str, Any]], None] | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run ``gameball-batch`` with ``argv`` in the running event loop; return the exit code.

    :param argv: the arguments (default ``sys.argv[1:]``).
    :param interrupt: set it to interrupt the run as Ctrl-C does: no more chunks
        are sent, requests in flight finish, the manifest stays consistent.
        Cancelling the call instead is the second Ctrl-C: it stops at once and
        prints the ``resume`` command that finishes the run (when a manifest exists).
    :param observer: called with each manifest entry once it is on disk.
    :param env: where credentials are looked up (default ``os.environ``).
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not _rich_available():
        print(_NO_RICH, file=sys.stderr)
        return EXIT_USAGE
    from ._display import ConsoleUI  # noqa: PLC0415 - rich only once a command runs

    ui = ConsoleUI(live=not args.no_live)
    make_session = _session_factory(args, os.environ if env is None else env)
    interrupt = interrupt if interrupt is not None else anyio.Event()
    try:
        return await _dispatch(args, ui, make_session, interrupt, observer)
    except UsageError as exc:
        ui.error(str(exc))
        return EXIT_USAGE
    except anyio.get_cancelled_exc_class():
        ui.aborted()  # says how to resume, then the cancellation goes on
        raise


async def _dispatch(
    args: argparse.Namespace,
    ui: ConsoleUI,
    make_session: SessionFactory,
    interrupt: anyio.Event,
    observer: Callable[[Mapping[str, Any]], None] | None,
) -> int:
    from . import _jobs  # noqa: PLC0415 - imports rich

    if args.command == "submit":
        options = SubmitOptions(
            operation=Operation(args.operation), input=args.file, format=args.format,
            results=args.results, manifest=args.manifest, rejects=args.rejects,
            skip_invalid=args.skip_invalid, chunk_size=args.chunk_size,
            concurrency=args.concurrency, max_pending=args.max_pending_jobs,
            stop_on_interrupt=args.stop_on_interrupt, force=args.force,
            max_errors=args.max_errors,
        )
        return await submit(options, make_session, ui, interrupt, observer)
    if args.command == "resume":
        return await resume(
            ResumeOptions(
                manifest=args.manifest, input=args.input, concurrency=args.concurrency,
                max_pending=args.max_pending_jobs, stop_on_interrupt=args.stop_on_interrupt,
            ),
            make_session, ui, interrupt, observer,
        )
    if args.command == "demo":
        from ._demo import demo  # noqa: PLC0415 - the fake server is only for the demo

        return await demo(
            records=args.records, jobs=args.jobs, job_seconds=args.job_seconds,
            directory=args.dir, poll=_poll_policy(args), ui=ui, interrupt=interrupt,
        )
    try:
        job_ids = [_jobs.job_id(text) for text in args.job_ids]
    except InvalidJobIdError as exc:
        raise UsageError(str(exc)) from None
    action: Callable[[GameballSession], Awaitable[int]]
    if args.command == "status":
        action = lambda gb: _jobs.status(gb, job_ids, ui, as_json=args.json)  # noqa: E731
    elif args.command == "stop":
        action = lambda gb: _jobs.stop(gb, job_ids, ui)  # noqa: E731
    else:
        action = lambda gb: _jobs.watch(gb, job_ids, ui)  # noqa: E731
    async with make_session(None) as gb:
        outcome = await _until(interrupt, action(gb))
    if outcome is None:
        ui.error("interrupted")
        return EXIT_INTERRUPTED
    return outcome


async def _until(interrupt: anyio.Event, work: Awaitable[T]) -> T | None:
    """Await ``work``, or give up (``None``) when ``interrupt`` is set first."""
    result: list[T] = []
    async with anyio.create_task_group() as tg:

        async def guard() -> None:
            await interrupt.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(guard)
        result.append(await work)
        tg.cancel_scope.cancel()
    return result[0] if result else None


async def _main(argv: Sequence[str] | None) -> int:
    interrupt = anyio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    presses = 0

    def on_sigint() -> None:
        # First Ctrl-C: stop gracefully (the manifest stays consistent).
        # Second: cancel at once; unsettled chunks are resolved by resume.
        nonlocal presses
        presses += 1
        if presses == 1:
            interrupt.set()
        elif task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
        installed = False
    try:
        return await run(argv, interrupt=interrupt)
    except asyncio.CancelledError:
        if presses > 1:  # run() has said it was aborted, and how to resume
            return EXIT_INTERRUPTED
        raise
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``gameball-batch`` console script; returns the exit code.

    :param argv: the arguments (default ``sys.argv[1:]``).
    """
    try:
        return asyncio.run(_main(argv))
    except KeyboardInterrupt:
        print("gameball-batch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
