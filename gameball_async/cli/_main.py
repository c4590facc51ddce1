"""The ``gameball-batch`` command's front: parse, dispatch to a command, handle Ctrl-C.

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
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio

from gameball_async import (
    DEFAULT_BASE_URL,
    GameballSession,
    InvalidJobIdError,
    Operation,
    PollPolicy,
)

from ._exit import EXIT_INTERRUPTED, EXIT_USAGE
from ._options import POLLS_IN_FLIGHT, ResumeOptions, SessionFactory, SubmitOptions, UsageError
from ._parser import API_KEY_ENV, BASE_URL_ENV, SECRET_KEY_ENV, build_parser
from ._submit import resume, submit

if TYPE_CHECKING:
    from ._display import ConsoleUI

__all__ = ["main", "run"]

T = TypeVar("T")

_NO_RICH: Final = (
    "gameball-batch needs the 'rich' package: install the CLI extra with\n"
    "    pip install 'gameball_async[cli]'"
)


def _poll_policy(args: argparse.Namespace) -> PollPolicy:
    interval = args.poll_interval
    if interval is None:
        return PollPolicy()
    longest = max(interval * 10, min(interval, 0.25))
    return PollPolicy(
        initial_delay=interval,
        min_delay=min(interval, 0.25),
        max_delay=longest,
        # a poll interval asked for holds for the polls aimed at an end too
        max_aimed_delay=longest,
    )


def _session_factory(args: argparse.Namespace, env: Mapping[str, str]) -> SessionFactory:
    def make(recorded_base_url: str | None) -> GameballSession:
        api_key = args.api_key or env.get(API_KEY_ENV)
        secret_key = args.secret_key or env.get(SECRET_KEY_ENV)
        if not api_key:
            raise UsageError(f"no API key: set {API_KEY_ENV} or pass --api-key")
        if not secret_key:
            raise UsageError(f"no secret key: set {SECRET_KEY_ENV} or pass --secret-key")
        # A manifest's jobs live where they were created: its URL beats the environment.
        base_url = args.base_url or recorded_base_url or env.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        try:
            return GameballSession(
                api_key,
                secret_key,
                base_url=base_url,
                poll=_poll_policy(args),
                max_in_flight_polls=POLLS_IN_FLIGHT,
            )
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
    # rich only once a command runs
    from ._jobs import job_id, status, stop, watch  # noqa: PLC0415

    if args.command == "submit":
        options = SubmitOptions(
            operation=Operation(args.operation),
            input=args.file,
            format=args.format,
            results=args.results,
            manifest=args.manifest,
            rejects=args.rejects,
            skip_invalid=args.skip_invalid,
            chunk_size=args.chunk_size,
            concurrency=args.concurrency,
            max_pending=args.max_pending_jobs,
            stop_on_interrupt=args.stop_on_interrupt,
            force=args.force,
            max_errors=args.max_errors,
        )
        return await submit(options, make_session, ui, interrupt, observer)
    if args.command == "resume":
        return await resume(
            ResumeOptions(
                manifest=args.manifest,
                input=args.input,
                concurrency=args.concurrency,
                max_pending=args.max_pending_jobs,
                stop_on_interrupt=args.stop_on_interrupt,
            ),
            make_session,
            ui,
            interrupt,
            observer,
        )
    if args.command == "demo":
        from ._demo import demo  # noqa: PLC0415 - the fake server is only for the demo

        return await demo(
            records=args.records,
            jobs=args.jobs,
            job_seconds=args.job_seconds,
            directory=args.dir,
            poll=_poll_policy(args),
            ui=ui,
            interrupt=interrupt,
        )
    if args.command == "fleet":
        from ._fleetview import FleetOptions, fleet_view  # noqa: PLC0415 - the redis extra

        view = FleetOptions(
            redis_url=args.redis,
            namespace=args.namespace,
            once=args.once,
            as_json=args.json,
            refresh=args.refresh,
            timeout=args.timeout,
            ended_within=args.ended_minutes * 60,
        )
        return await fleet_view(view, ui, interrupt)
    try:
        job_ids = [job_id(text) for text in args.job_ids]
    except InvalidJobIdError as exc:
        raise UsageError(str(exc)) from None
    action: Callable[[GameballSession], Awaitable[int]]
    if args.command == "status":
        action = lambda gb: status(gb, job_ids, ui, as_json=args.json)  # noqa: E731
    elif args.command == "stop":
        action = lambda gb: stop(gb, job_ids, ui)  # noqa: E731
    else:
        action = lambda gb: watch(gb, job_ids, ui)  # noqa: E731
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
