"""An asyncio event loop in a daemon thread, for a fake that serves from its own thread.

A :class:`FakeGameball` started with ``start_in_thread`` (or ``with``) keeps its
aiohttp server and all its state on this loop. Another thread (a sync test, or
a test's own event loop) reaches that state only through :meth:`LoopThread.call`,
which runs a function on the loop and waits for its result: the state has one
owner, so a read never sees a half-made change and a change made by a test is
in place before the server handles its next request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

__all__ = ["CALL_TIMEOUT", "LoopThread"]

_T = TypeVar("_T")

#: Bound on one call into the loop: it only turns a wedged server thread into an error.
CALL_TIMEOUT: Final = 60.0


class LoopThread:
    """A new event loop running forever in a daemon thread, until :meth:`stop`.

    :param name: the thread's name.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # guards _accepting, so that no call is queued behind the loop's stop
        self._lock = threading.Lock()
        self._accepting = False

    def start(self) -> None:
        """Start the thread and its loop; return once the loop runs.

        :raises RuntimeError: when already started.
        """
        if self._thread is not None:
            raise RuntimeError("LoopThread already started")
        loop = asyncio.new_event_loop()
        running = threading.Event()
        thread = threading.Thread(target=self._main, args=(loop, running), name=self._name)
        thread.daemon = True  # a test that forgets to close must not hang the interpreter
        self._loop, self._thread = loop, thread
        thread.start()
        running.wait()
        with self._lock:
            self._accepting = True

    @staticmethod
    def _main(loop: asyncio.AbstractEventLoop, running: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(running.set)
        try:
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    @property
    def in_loop_thread(self) -> bool:
        """Whether the calling thread is the loop's own."""
        return self._thread is not None and threading.current_thread() is self._thread

    def call(self, func: Callable[[], _T]) -> _T:
        """Run ``func`` on the loop, wait for it, and return its result.

        Called from the loop's own thread, or once the loop no longer accepts
        calls (stopped: nothing else touches the state then), it runs ``func``
        directly.

        :param func: a synchronous function.
        :return: what ``func`` returned.
        :raises TimeoutError: when the loop does not run it within
            :data:`CALL_TIMEOUT` seconds.
        """
        if self.in_loop_thread:
            return func()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result = func()
            except BaseException as exc:  # handed to the caller, who re-raises it
                future.set_exception(exc)
            else:
                future.set_result(result)

        with self._lock:
            loop = self._loop
            if not self._accepting or loop is None:
                return func()
            loop.call_soon_threadsafe(run)
        return _result(future)

    def run(self, coro: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        """Run a coroutine function on the loop, wait for it, and return its result.

        :param coro: called on the loop to make the coroutine.
        :return: the coroutine's result.
        :raises RuntimeError: when the loop is not running.
        :raises TimeoutError: when it does not finish within :data:`CALL_TIMEOUT` seconds.
        """
        with self._lock:
            loop = self._loop
            if not self._accepting or loop is None:
                raise RuntimeError("LoopThread is not running")

            async def main() -> _T:
                return await coro()

            future = asyncio.run_coroutine_threadsafe(main(), loop)
        return _result(future)

    def stop(self) -> None:
        """Stop the loop, wait for its thread to end, and close the loop; idempotent.

        Calls queued before this one still run: they are ahead of the stop in
        the loop's queue.
        """
        with self._lock:
            was_accepting, self._accepting = self._accepting, False
            if was_accepting and self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()


def _result(future: concurrent.futures.Future[_T]) -> _T:
    try:
        return future.result(CALL_TIMEOUT)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(
            f"the fake's server thread did not answer within {CALL_TIMEOUT:g} s"
        ) from None
