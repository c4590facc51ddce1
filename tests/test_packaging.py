"""Packaging: one version source, PyPI metadata, links that work on PyPI, true floors.

These read ``pyproject.toml`` and ``README.md`` from the source tree (the sdist
ships both), so they run from a clone and from an unpacked sdist alike.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from _support import PATIENCE
from aiohttp import web
from aiohttp.test_utils import TestServer

import gameball_async
from gameball_async import GameballSession, RateLimit, RetryPolicy, SessionClosedError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli below 3.11
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

ROOT = Path(__file__).resolve().parent.parent
PROJECT_URL = "https://github.com/gameball-async/gameball_async"


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        data: dict[str, Any] = tomllib.load(file)
    return data


def test_version_metadata_is_the_package_version() -> None:
    assert importlib.metadata.version("gameball_async") == gameball_async.__version__


def test_version_has_one_source(pyproject: dict[str, Any]) -> None:
    project = pyproject["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]
    assert pyproject["tool"]["hatch"]["version"]["path"] == "gameball_async/_version.py"
    # The imported package's file: .ci/run tests an installed wheel, not this tree.
    source = Path(gameball_async.__file__).parent / "_version.py"
    assert f'__version__ = "{gameball_async.__version__}"' in source.read_text()


def test_license_is_shipped(pyproject: dict[str, Any]) -> None:
    project = pyproject["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "gameball_async developers" in text
    assert "LICENSE" in pyproject["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]


def test_project_urls(pyproject: dict[str, Any]) -> None:
    urls = pyproject["project"]["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Source", "Changelog", "Issues"}
    assert all(url.startswith("https://") for url in urls.values())
    assert urls["Source"] == PROJECT_URL


def test_classifiers_cover_every_supported_python(pyproject: dict[str, Any]) -> None:
    project = pyproject["project"]
    classifiers = set(project["classifiers"])
    floor = re.fullmatch(r">=3\.(\d+)", project["requires-python"])
    assert floor is not None
    for minor in range(int(floor.group(1)), 14):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    for needed in (
        "License :: OSI Approved :: MIT License",
        "Framework :: AsyncIO",
        "Intended Audience :: Developers",
        "Typing :: Typed",
    ):
        assert needed in classifiers
    assert any(c.startswith("Development Status :: ") for c in classifiers)


def test_sdist_carries_what_its_tests_need(pyproject: dict[str, Any]) -> None:
    include = pyproject["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    # .ci/run removes the package from the unpacked sdist (the installed wheel
    # is what its suite tests), so only the rest must be on disk here.
    assert "gameball_async" in include
    for needed in ("tests", "examples", "benchmarks", "docs", "mkdocs.yml"):
        assert needed in include
        assert (ROOT / needed).exists()
    assert {"README.md", "CHANGELOG.md", "LICENSE"} <= set(include)


def test_every_runtime_dependency_has_a_floor(pyproject: dict[str, Any]) -> None:
    # .ci/run turns these floors into == pins and runs the suite on them.
    for requirement in pyproject["project"]["dependencies"]:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+>=[0-9.]+(,<[0-9.]+)?", requirement), requirement


def test_readme_links_work_on_pypi() -> None:
    # PyPI renders the README away from the repository: relative links break there.
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert targets
    for target in targets:
        assert target.startswith(("https://", "#")), target
    assert "pip install gameball_async" in readme.split("\n## ", 1)[0]  # how it starts


# aiohttp before 3.12.4 let a bare AssertionError out of a request whose
# connection the session closed under it; the floor in pyproject is that fix.
@pytest.mark.anyio
async def test_refresh_in_flight_during_close_raises_session_closed() -> None:
    arrived = anyio.Event()
    release = anyio.Event()

    async def hanging(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/batch/{job_id}", hanging)
    outcome: list[object] = []
    async with TestServer(app, host="127.0.0.1") as server:
        gb = GameballSession(
            "key",
            "secret",
            base_url=f"http://127.0.0.1:{server.port}",
            rate_limit=RateLimit.disabled(),
            retry=RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05),
        )
        job = gb.job(7, "cashback")

        async def refresh() -> None:
            try:
                outcome.append(await job.refresh())
            except Exception as exc:  # the test inspects whatever comes out
                outcome.append(exc)

        try:
            with anyio.fail_after(PATIENCE):
                async with gb, anyio.create_task_group() as tg:
                    tg.start_soon(refresh)
                    await arrived.wait()
                    await gb.close()
        finally:
            release.set()
    assert len(outcome) == 1
    assert isinstance(outcome[0], SessionClosedError), repr(outcome[0])
