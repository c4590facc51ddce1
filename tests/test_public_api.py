"""The public surface: ``__all__``, where public objects say they live, and that every
module of the package imports on its own (issue 10, point 6)."""

from __future__ import annotations

import importlib.util
import json
import os
import pkgutil
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
from _support import OPERATION_WORDS

import gameball_async
from gameball_async import GameballSession
from gameball_async.testing import FakeGameball

# DESIGN.md section 4: these names are a contract (add, never rename or remove).
CONTRACT = {
    "GameballSession",
    "BatchJob",
    "BatchStatus",
    "BatchState",
    "Operation",
    "Customer",
    "CustomerAttributes",
    "Order",
    "BalanceInquiry",
    "BalanceAdjustment",
    "Cashback",
    "Redemption",
    "Event",
    "PollPolicy",
    "RetryPolicy",
    "RateLimit",
    "GameballError",
    "APIError",
    "AuthenticationError",
    "NotFoundError",
    "RateLimitError",
    "InvalidRequestError",
    "ServerError",
    "TransportError",
    "AmbiguousSubmissionError",
    "ProtocolError",
    "InvalidBatchError",
    "BatchError",
    "BatchFailedError",
    "BatchStoppedError",
    "PollTimeoutError",
    "as_completed",
    "wait_all",
    "DEFAULT_BASE_URL",
    # added in 0.2 (issue 9)
    "CreationTimeoutError",
    "RedirectError",
}


def test_all_holds_the_contract() -> None:
    assert set(gameball_async.__all__) >= CONTRACT


def test_all_is_sorted_and_importable() -> None:
    names = gameball_async.__all__
    assert list(names) == sorted(names)
    for name in names:
        assert hasattr(gameball_async, name), name


def test_every_public_name_is_documented() -> None:
    for name in gameball_async.__all__:
        obj = getattr(gameball_async, name)
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_every_error_derives_from_the_root() -> None:
    for name in gameball_async.__all__:
        obj = getattr(gameball_async, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, gameball_async.GameballError), name


def test_contract_operations_and_states() -> None:
    ops = {op.value for op in gameball_async.Operation}
    assert ops == OPERATION_WORDS
    states = {s.name for s in gameball_async.BatchState}
    assert states == {"QUEUED", "RUNNING", "COMPLETED", "FAILED", "STOPPED", "UNKNOWN", "SUBMITTED"}


def test_testing_module_exports_the_fake() -> None:
    assert FakeGameball.__doc__


def test_all_is_exactly_the_public_names() -> None:
    # as httpx's test does: nothing public that __all__ forgets (e.g. the
    # ``annotations`` a ``from __future__`` import binds), nothing listed that is private
    public = {
        name
        for name, value in vars(gameball_async).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(gameball_async.__all__) == sorted(public | {"__version__"})


def test_public_objects_report_the_package_as_their_module() -> None:
    for name in gameball_async.__all__:
        obj = getattr(gameball_async, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__ == "gameball_async", name
            assert getattr(gameball_async, obj.__qualname__) is obj, name


def test_public_classes_type_hints_still_resolve() -> None:
    # get_type_hints looks names up in sys.modules[cls.__module__]: moving
    # __module__ must not break it (cattrs and user code call it)
    for name in gameball_async.__all__:
        obj = getattr(gameball_async, name)
        if isinstance(obj, type):
            typing.get_type_hints(obj)


@pytest.mark.parametrize("name", ["fetch_status", "send_stop", "poller"])
def test_session_internals_are_private(name: str) -> None:
    # the job handles' hooks into the session are not part of the contract
    assert not hasattr(GameballSession, name)
    assert hasattr(GameballSession, f"_{name}")


def _package_modules() -> list[str]:
    names = ["gameball_async", "_gameball_async_pytest"]
    for info in pkgutil.walk_packages(gameball_async.__path__, "gameball_async."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # running the command is what importing it does
        names.append(info.name)
    if importlib.util.find_spec("rich") is None:  # the ``cli`` extra is not installed
        names = [name for name in names if not _is_cli(name)]
    return sorted(names)


def _is_cli(name: str) -> bool:
    parts = name.split(".")
    return any(part == "cli" or part.startswith("_cli") for part in parts[1:])


# One interpreter forks a child per module: each child starts with none of the
# package imported, so an import-order dependence or a circle still fails in
# it, at the cost of a fork rather than of a new interpreter (one per module
# took 35-45 s of a CI suite). The third-party libraries are imported once
# first, with every warning an error, as each import alone would see them.
_FORKING_IMPORTER = r"""
import importlib, json, os, sys, traceback, warnings
warnings.simplefilter("error")
for library in ("aiohttp", "attrs", "cattrs", "anyio", "redis.asyncio", "rich",
                "prometheus_client", "opentelemetry.trace"):
    try:
        importlib.import_module(library)
    except ImportError:
        pass
assert not any(name.split(".")[0] == "gameball_async" for name in sys.modules)
failed, running = {}, {}
names = json.loads(sys.argv[1])
width = max(2, os.cpu_count() or 2)


def reap():
    child, status = os.wait()
    name, pipe = running.pop(child)
    why = pipe.read().decode()
    pipe.close()
    if status != 0:
        failed[name] = why or f"wait status {status}"


for name in names:
    while len(running) >= width:
        reap()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        code = 0
        try:
            importlib.import_module(name)
        except BaseException:
            os.write(write, traceback.format_exc().encode()[-16_000:])  # within a pipe buffer
            code = 1
        os._exit(code)
    os.close(write)
    running[child] = (name, os.fdopen(read, "rb"))
while running:
    reap()
print(json.dumps(failed))
"""


def _import_each_alone(names: list[str], path: str | None = None) -> dict[str, str]:
    """Each module imported in a process of its own: the failures' tracebacks by name.

    :param path: a directory put first on the children's ``sys.path``.
    """
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", _FORKING_IMPORTER, json.dumps(names)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    failed: dict[str, str] = json.loads(done.stdout)
    return failed


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    # a process per module, so a module that works only when another was
    # imported first (an import-order dependence or a circle) fails here
    names = _package_modules()
    assert "gameball_async._session" in names
    assert "gameball_async.testing" in names
    failed = _import_each_alone(names)
    assert failed == {}, "\n".join(f"{name}: {why}" for name, why in failed.items())


def test_an_import_order_dependence_is_caught(tmp_path: Path) -> None:
    # the check above fails for a module that works only after another one
    package = tmp_path / "order_dependent"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "setter.py").write_text("import order_dependent\norder_dependent.VALUE = 1\n")
    (package / "reader.py").write_text("from order_dependent import VALUE\n")
    names = ["order_dependent.setter", "order_dependent.reader", "order_dependent"]
    failed = _import_each_alone(names, str(tmp_path))
    assert set(failed) == {"order_dependent.reader"}
    assert "ImportError" in failed["order_dependent.reader"]
