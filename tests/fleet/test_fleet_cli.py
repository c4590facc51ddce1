"""``gameball-batch fleet``: the read-only view, against a real fleet at work.

In-process (``cli.run``) for ``--once``, ``--json``, the namespace list and
failed reads; as a terminal program in tmux for the live view (its screen is
read with ``capture-pane``).
"""

from __future__ import annotations

import datetime
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from _fleet_support import PATIENCE, Running, running_fleet
from rich.console import Console

from gameball_async.cli import build_parser, run
from gameball_async.cli._fleetview import FleetScreen, _age, render_fleet, render_namespaces
from gameball_async.fleet import (
    EndedJob,
    FleetSnapshot,
    JobProgress,
    LimiterView,
    LiveProcess,
    OpenJob,
)
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


async def test_live_json_is_one_line_per_refresh(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    interrupt = anyio.Event()
    lines: list[str] = []
    async with running_fleet(redis_server.url, pause=False) as running:
        namespace = running.fleet.namespace
        assert namespace is not None
        args = ["--redis", redis_server.url, "--namespace", namespace, "--json", "--refresh", "0.1"]
        async with anyio.create_task_group() as tg:
            codes: list[int] = []

            async def view() -> None:
                codes.append(await fleet_cli(*args, interrupt=interrupt))

            tg.start_soon(view)
            with anyio.fail_after(PATIENCE):
                while len(lines) < 3:
                    await anyio.sleep(0.05)
                    lines += capsys.readouterr().out.splitlines()
            interrupt.set()
    assert codes == [0]
    for line in lines:
        assert json.loads(line)["open_jobs"][0]["job_id"] == running.open_jobs[0].job_id


async def test_the_interrupt_ends_the_view_at_once_on_a_frozen_redis(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    interrupt = anyio.Event()
    codes: list[int] = []
    async with anyio.create_task_group() as tg:

        async def view() -> None:
            codes.append(await fleet_cli("--redis", redis_server.url, "--namespace", "acct",
                                         "--refresh", "0.1", interrupt=interrupt))  # fmt: skip

        tg.start_soon(view)
        with anyio.fail_after(PATIENCE):
            while "limiter" not in capsys.readouterr().out:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        redis_server.freeze()
        try:
            await anyio.sleep(0.3)  # a read is in progress, held by the frozen server
            started = anyio.current_time()
            interrupt.set()
            with anyio.fail_after(3):
                while not codes:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            assert anyio.current_time() - started < 2.5  # about a second: no read waited on
        finally:
            redis_server.thaw()
    assert codes == [0]


def _snapshot(open_jobs: int, *, last_second: int, paused_for: float = 0.0) -> FleetSnapshot:
    taken = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.timezone.utc)
    return FleetSnapshot(
        version=1,
        namespace="acct",
        taken_at=taken,
        open_jobs=tuple(
            OpenJob(
                job_id=str(n),
                operation="cashback",
                created_at=taken,
                age=75.0,
                status=JobProgress(
                    state="Running", finished=40, failed=2, total=100, terminal=False
                )
                if n % 2
                else None,
                lease_holder="p1.0" if n % 2 else None,
                process_id="p1" if n % 2 else None,
                lease_expires_in=2.5 if n % 2 else None,
            )
            for n in range(open_jobs)
        ),
        limiter=LimiterView(
            per_second=30,
            per_window=360,
            window=30.0,
            last_second=last_second,
            last_window=200,
            in_flight=3,
            paused_for=paused_for,
            waiting=2,
        ),
        processes=(LiveProcess(process_id="p1", expires_in=4.2),),
        ended_jobs=(
            EndedJob(
                job_id="e1",
                operation="orders",
                created_at=taken,
                ended_at=taken - datetime.timedelta(seconds=130),
                outcome="Failed",
                finished=5,
                failed=7,
                total=12,
            ),
        ),
        ended_partial=True,
    )


def _text(renderable: Any) -> str:
    console = Console(width=140, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_render_a_busy_fleet() -> None:
    text = _text(render_fleet(_snapshot(25, last_second=30, paused_for=12.34), namespace="acct"))
    assert "30 / 30" in text
    assert "200 / 360" in text
    assert "12.3 s left (a 429 paused the fleet)" in text
    assert "2 sessions waiting for a slot" in text
    assert "3 requests" in text
    assert "5 more open jobs" in text  # 20 rows shown
    assert "no status yet" in text
    assert "nobody" in text
    assert "42 / 100" in text
    assert "1m15s" in text
    assert "2m10s ago" in text
    assert "Failed" in text
    assert "registry too large" in text
    assert "p1.0" in text


def test_render_an_idle_fleet() -> None:
    snapshot = attrs.evolve(_snapshot(0, last_second=0), processes=(), ended_jobs=())
    text = _text(render_fleet(snapshot, namespace="acct"))
    assert "no open jobs" in text
    assert "no process alive" in text
    assert "pause      none" in text


def test_render_namespaces() -> None:
    assert "no fleet keys" in _text(render_namespaces([]))
    text = _text(render_namespaces(["a", "b"]))
    assert "  a" in text
    assert "  b" in text


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, ""), (0.25, "0.2s"), (9.96, "10.0s"), (42.0, "42s"), (61, "1m01s"), (7322, "2h02m")],
)
def test_ages(seconds: float | None, shown: str) -> None:
    assert _age(seconds) == shown


def test_render_without_a_snapshot_says_nothing_was_read() -> None:
    screen = FleetScreen("acct")
    screen.failed("Redis is down")
    assert screen.failures == 1
    assert screen.snapshot is None
    text = _text(render_fleet(None, namespace="acct", error="Redis is down"))
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
                # Redis freezes: the screen says the read failed, the view goes on
                redis_server.freeze()
                try:
                    with anyio.fail_after(PATIENCE):
                        while "read failed" not in screen:
                            await anyio.sleep(0.2)
                            screen = await pane()
                    assert running.open_jobs[0].job_id in screen  # the last snapshot stays
                finally:
                    redis_server.thaw()
                with anyio.fail_after(PATIENCE):
                    while "read failed" in screen:
                        await anyio.sleep(0.2)
                        screen = await pane()
                assert running.open_jobs[0].job_id in screen
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
