"""``gameball-batch fleet``: the read-only view, against a real fleet at work.

In-process (``cli.run``) for ``--once``, ``--json``, the namespace list and
failed reads; as a terminal program in tmux for the live view (its screen is
read with ``capture-pane``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import anyio
import pytest
from _fleet_view import PATIENCE, Running, running_fleet

from gameball_async.cli import build_parser, run
from gameball_async.cli._fleetview import FleetScreen, render_fleet
from gameball_async.testing import RedisServer

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


async def fleet_cli(*args: str, interrupt: anyio.Event | None = None) -> int:
    # no API key anywhere: the view reads Redis only
    return await run(["--no-live", "fleet", *args], env={}, interrupt=interrupt)


async def test_once_json_shows_the_fleet(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_fleet(redis_server.url) as running:
        namespace = running.fleet.namespace
        assert namespace is not None
        code = await fleet_cli(
            "--redis", redis_server.url, "--namespace", namespace, "--once", "--json"
        )
        out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["version"] == 1
    assert data["namespace"] == namespace
    assert [job["job_id"] for job in data["open_jobs"]] == [j.job_id for j in running.open_jobs]
    for job in data["open_jobs"]:
        assert job["status"]["state"] in ("Queued", "Running")
        assert job["process_id"] == running.fleet.process_id
    assert data["limiter"]["paused_for"] > 0
    assert data["limiter"]["last_window"] >= 4
    assert [p["process_id"] for p in data["processes"]] == [running.fleet.process_id]
    assert [(j["job_id"], j["outcome"]) for j in data["ended_jobs"]] == [
        (running.ended.job_id, "Completed")
    ]


async def test_once_prints_the_view(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "140")
    async with running_fleet(redis_server.url) as running:
        namespace = running.fleet.namespace
        assert namespace is not None
        code = await fleet_cli("--redis", redis_server.url, "--namespace", namespace, "--once")
        out, err = capsys.readouterr()
    assert code == 0, err
    assert f"gameball-batch fleet {namespace}" in out
    for job in running.open_jobs:
        assert job.job_id in out
    assert "0 / 200" in out
    assert "0 / 300" in out
    assert "a 429 paused the fleet" in out
    assert "last 1 s" in out
    assert "/ 30" in out  # the documented limits: no session in the viewer
    assert f"{running.fleet.process_id}." in out  # the lease holder (a session of it)
    assert running.ended.job_id in out
    assert "Completed" in out


async def test_without_a_namespace_it_lists_them(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await fleet_cli("--redis", redis_server.url, "--once") == 1
    assert "no fleet keys" in capsys.readouterr().out
    async with running_fleet(redis_server.url, pause=False) as running:
        assert await fleet_cli("--redis", redis_server.url) == 0
        out = capsys.readouterr().out
        assert str(running.fleet.namespace) in out
        assert "--namespace" in out
        assert await fleet_cli("--redis", redis_server.url, "--json") == 0
        assert json.loads(capsys.readouterr().out) == {"namespaces": [running.fleet.namespace]}


async def test_a_failed_read_is_an_error_not_a_traceback(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_server.kill()
    code = await fleet_cli("--redis", redis_server.url, "--namespace", "acct", "--once")
    _, err = capsys.readouterr()
    assert code == 1
    assert "snapshot" in err
    assert "Traceback" not in err


async def test_bad_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert await fleet_cli("--once") == 2  # --redis is required
    assert await fleet_cli("--redis", "http://nowhere", "--once") == 2
    assert "redis" in capsys.readouterr().err.lower()
    assert await fleet_cli("--redis", "redis://127.0.0.1:1", "--namespace", "a b") == 2
    assert "namespace" in capsys.readouterr().err
    assert "fleet" in build_parser().format_help()


async def test_without_the_redis_extra_it_says_what_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gameball_async.fleet", None)
    assert await fleet_cli("--redis", "redis://127.0.0.1:1", "--once") == 2
    assert "gameball_async[cli,redis]" in capsys.readouterr().err


async def test_the_view_keeps_going_through_a_failed_read(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # not a terminal: one frame per read, so each read's outcome can be seen
    interrupt = anyio.Event()
    frames: list[str] = []

    def seen(text: str) -> bool:
        frames.append(capsys.readouterr().out)
        return text in frames[-1]

    async with running_fleet(redis_server.url, pause=False) as running:
        namespace = running.fleet.namespace
        assert namespace is not None
        args = ["--redis", redis_server.url, "--namespace", namespace]
        args += ["--refresh", "0.1", "--timeout", "0.3"]
        async with anyio.create_task_group() as tg:
            codes: list[int] = []

            async def view() -> None:
                codes.append(await fleet_cli(*args, interrupt=interrupt))

            tg.start_soon(view)
            with anyio.fail_after(PATIENCE):
                while not seen(running.open_jobs[0].job_id):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                redis_server.freeze()
                try:
                    while not seen("read failed"):  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                    # the last snapshot stays on screen, marked
                    assert running.open_jobs[0].job_id in frames[-1]
                finally:
                    redis_server.thaw()
                while "read failed" in frames[-1] or "open jobs" not in frames[-1]:
                    await anyio.sleep(0.05)
                    seen("")
            interrupt.set()
            with anyio.fail_after(2):  # the interrupt ends it at once
                while not codes:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
    assert codes == [0]


def test_render_without_a_snapshot_says_nothing_was_read() -> None:
    screen = FleetScreen("acct")
    screen.failed("Redis is down")
    assert screen.failures == 1
    assert screen.snapshot is None
    from rich.console import Console  # noqa: PLC0415

    console = Console(width=120, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(render_fleet(None, namespace="acct", error="Redis is down"))
    text = console.export_text()
    console.file.close()
    assert "read failed: Redis is down (nothing read yet)" in text


# -- as a terminal program ----------------------------------------------------


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
async def test_the_live_view_in_tmux(redis_server: RedisServer) -> None:
    tmux = shutil.which("tmux")
    assert tmux is not None
    with tempfile.TemporaryDirectory() as directory:
        socket = str(Path(directory) / "tmux.sock")  # a server of its own

        async def pane() -> str:
            done = await anyio.run_process([tmux, "-S", socket, "capture-pane", "-p", "-t", "view"])
            return done.stdout.decode()

        async with running_fleet(redis_server.url) as running:
            namespace = running.fleet.namespace
            assert namespace is not None
            command = (
                f"{sys.executable} -m gameball_async fleet --redis {redis_server.url} "
                f"--namespace {namespace}; echo EXITED $?; sleep 60"
            )
            environment = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
            environment.pop("GAMEBALL_API_KEY", None)
            await anyio.run_process(
                [tmux, "-S", socket, "new-session", "-d", "-s", "view", "-x", "150", "-y", "50",
                 "-c", str(REPO), command],
                env=environment,
            )  # fmt: skip
            try:
                screen = ""
                with anyio.fail_after(PATIENCE):
                    while not all(
                        text in screen
                        for text in (*ids_of(running), "last 1 s", "a 429 paused the fleet")
                    ):
                        await anyio.sleep(0.2)
                        screen = await pane()
                assert running.ended.job_id in screen
                assert "Completed" in screen
                assert running.fleet.process_id in screen
                assert "Traceback" not in screen
                # Ctrl-C: it exits at once, with 0
                await anyio.run_process([tmux, "-S", socket, "send-keys", "-t", "view", "C-c"])
                with anyio.fail_after(3):
                    while "EXITED" not in screen:
                        await anyio.sleep(0.1)
                        screen = await pane()
                assert "EXITED 0" in screen
            finally:
                await anyio.run_process([tmux, "-S", socket, "kill-server"], check=False)


def ids_of(running: Running) -> list[str]:
    return [job.job_id for job in running.open_jobs]
