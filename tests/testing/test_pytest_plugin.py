"""The pytest plugin (``_gameball_async_pytest``), each case in its own pytest run.

Every run is a subprocess (``pytester.runpytest_subprocess``) with the plugin
loaded explicitly (``-p _gameball_async_pytest``) and any installed copy of it
blocked (``-p no:gameball_async``), so that what is tested is this checkout,
under exactly the runner each case names.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import _gameball_async_pytest
import gameball_async

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "no:gameball_async", "-p", "_gameball_async_pytest", "-p", "no:cacheprovider")
NO_ASYNCIO = ("-p", "no:asyncio")
NO_ANYIO = ("-p", "no:anyio")
ASYNCIO_INI = "asyncio_default_fixture_loop_scope = function\n"

# A session on the fake, used by every runner's test: create a batch, await it.
SESSION_HELPER = """
from gameball_async import GameballSession, PollPolicy, RateLimit

async def run_batch(fake, customers=("c1", "c2", "c3")):
    async with GameballSession(
        fake.api_key, fake.secret_key, base_url=fake.base_url,
        poll=PollPolicy(initial_delay=0.05, min_delay=0.02, max_delay=0.5),
        rate_limit=RateLimit.disabled(),
    ) as gb:
        job = await gb.create_batch("balance-inquiry", [{"customerId": c} for c in customers])
        return await job.wait(timeout=20)

def check(status, fake):
    # the same assertions in every runner: the batch finished and the fake saw it
    assert status.state.name == "COMPLETED", status
    assert status.finished_count == 3
    assert fake.counts["create"] == 1
    assert len(fake.jobs) == 1
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester dir whose subprocess runs import this checkout's plugin and SDK."""
    roots = dict.fromkeys(
        [
            str(Path(_gameball_async_pytest.__file__).resolve().parent),
            str(Path(gameball_async.__file__).resolve().parent.parent),
        ]
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(roots))
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    pytester.makepyfile(helper=SESSION_HELPER)
    return pytester


def _needs_pytest_asyncio() -> None:
    assert importlib.util.find_spec("pytest_asyncio") is not None, (
        "pytest-asyncio (in the dev extra) is not installed: pip install -e '.[dev]'"
    )


def _ini(pytester: pytest.Pytester, extra: str = "") -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\naddopts = --strict-markers\n" + extra)


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*PLUGIN, *args, "-v", timeout=120)


class TestRunners:
    """The ``fake_gameball`` fixture under each runner, each in its own run."""

    def test_pytest_asyncio_strict_mode(self, project: pytest.Pytester) -> None:
        _needs_pytest_asyncio()
        _ini(project, "asyncio_mode = strict\n" + ASYNCIO_INI)
        project.makepyfile(
            test_strict="""
            import pytest
            from helper import check, run_batch

            @pytest.mark.asyncio
            async def test_batch(fake_gameball):
                status = await run_batch(fake_gameball)
                check(status, fake_gameball)
            """
        )
        result = _run(project, *NO_ANYIO)
        result.assert_outcomes(passed=1)
        # "Mode.STRICT" on 3.11+, "strict" on 3.10 (enum formatting changed)
        result.stdout.re_match_lines(
            [r"(?i)asyncio: mode=(mode\.)?strict\b.*", r".*test_batch PASSED.*"]
        )

    def test_pytest_asyncio_auto_mode(self, project: pytest.Pytester) -> None:
        _needs_pytest_asyncio()
        _ini(project, "asyncio_mode = auto\n" + ASYNCIO_INI)
        project.makepyfile(
            test_auto="""
            from helper import check, run_batch

            async def test_batch(fake_gameball):
                status = await run_batch(fake_gameball)
                check(status, fake_gameball)
            """
        )
        result = _run(project, *NO_ANYIO)
        result.assert_outcomes(passed=1)
        result.stdout.re_match_lines(
            [r"(?i)asyncio: mode=(mode\.)?auto\b.*", r".*test_batch PASSED.*"]
        )

    def test_anyio_plugin(self, project: pytest.Pytester) -> None:
        _ini(project)
        project.makepyfile(
            test_anyio="""
            import pytest
            from helper import check, run_batch

            @pytest.fixture
            def anyio_backend():
                return "asyncio"

            @pytest.mark.anyio
            async def test_batch(fake_gameball):
                status = await run_batch(fake_gameball)
                check(status, fake_gameball)
            """
        )
        result = _run(project, *NO_ASYNCIO)
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*test_batch PASSED*"])

    def test_plain_sync_test(self, project: pytest.Pytester) -> None:
        _ini(project)
        project.makepyfile(
            test_sync="""
            import asyncio
            from helper import check, run_batch

            def test_batch(fake_gameball):
                # a sync test: code under test runs its own loop (asyncio.run)
                status = asyncio.run(run_batch(fake_gameball))
                check(status, fake_gameball)
            """
        )
        result = _run(project, *NO_ASYNCIO, *NO_ANYIO)
        result.assert_outcomes(passed=1)


class TestSettings:
    """The ``fake_gameball`` marker and ``fake_gameball_factory``."""

    def test_marker_settings_reach_the_fake(self, project: pytest.Pytester) -> None:
        _ini(project)
        project.makepyfile(
            test_marker="""
            import asyncio
            import pytest
            from gameball_async.testing import Faults
            from helper import check, run_batch

            pytestmark = pytest.mark.fake_gameball(processing_rate=400, seed=3)

            @pytest.mark.fake_gameball(
                customers={"rich": 50.0, "poor": 0.0},
                faults={"http_500": 1.0, "routes": ["stop"]},
                seed=7,
            )
            def test_marked(fake_gameball):
                status = asyncio.run(run_batch(fake_gameball, ("rich", "ghost", "poor")))
                assert status.finished_count == 2
                assert [(r.index, r.code) for r in status.failed] == [(1, 7000)]
                assert fake_gameball.faults == Faults(http_500=1.0, routes=["stop"])
                (job,) = fake_gameball.jobs.values()
                assert job.processing_rate == 400  # from the module's marker

            def test_module_marker_only(fake_gameball):
                status = asyncio.run(run_batch(fake_gameball))
                assert status.finished_count == 3  # no customers given: anyone exists
                (job,) = fake_gameball.jobs.values()
                assert job.processing_rate == 400
                assert fake_gameball.faults == Faults()
            """
        )
        result = _run(project, *NO_ASYNCIO, *NO_ANYIO)
        result.assert_outcomes(passed=2)

    def test_a_fake_settings_value_through_the_marker_and_the_factory(
        self, project: pytest.Pytester
    ) -> None:
        _ini(project)
        project.makepyfile(
            test_value="""
            import asyncio
            import pytest
            from gameball_async.testing import FakeSettings
            from helper import check, run_batch

            pytestmark = pytest.mark.fake_gameball(processing_rate=400, seed=3)

            @pytest.mark.fake_gameball(settings=FakeSettings(queue_delay=0.01), seed=5)
            class TestValue:
                @pytest.mark.fake_gameball(customers={"c1": 1.0, "c2": 2.0, "c3": 3.0})
                def test_marked(self, fake_gameball):
                    # the class's settings replace the module's, its seed and the
                    # test's customers override fields of them
                    assert fake_gameball.settings == FakeSettings(
                        queue_delay=0.01, seed=5, customers={"c1": 1.0, "c2": 2.0, "c3": 3.0}
                    )
                    check(asyncio.run(run_batch(fake_gameball)), fake_gameball)

            def test_factory(fake_gameball_factory):
                base = FakeSettings(customers=["c1"], seed=4)
                fake = fake_gameball_factory(base, processing_rate=50)
                assert fake.settings == FakeSettings(customers=["c1"], seed=4, processing_rate=50)
                status = asyncio.run(run_batch(fake))
                assert (status.finished_count, status.error_count) == (1, 2)
                assert fake_gameball_factory(settings=base).settings == base
            """
        )
        result = _run(project, *NO_ASYNCIO, *NO_ANYIO)
        result.assert_outcomes(passed=2)

    def test_bad_markers_fail_the_test_with_the_reason(self, project: pytest.Pytester) -> None:
        _ini(project)
        project.makepyfile(
            test_bad="""
            import pytest

            @pytest.mark.fake_gameball(processing_ratio=5)
            def test_unknown_setting(fake_gameball):
                pass

            @pytest.mark.fake_gameball(processing_rate=0)
            def test_invalid_setting(fake_gameball):
                pass

            @pytest.mark.fake_gameball(5)
            def test_positional(fake_gameball):
                pass
            """
        )
        result = _run(project, *NO_ASYNCIO, *NO_ANYIO)
        result.assert_outcomes(errors=3)
        result.stdout.fnmatch_lines(
            [
                "*TypeError*processing_ratio*",
                "*ValueError: processing_rate must be > 0*",
                "*keyword arguments only*",
            ],
            consecutive=False,
        )

    def test_factory_makes_several_fakes_and_closes_them(self, project: pytest.Pytester) -> None:
        _ini(project)
        project.makepyfile(
            test_factory="""
            import asyncio
            from helper import check, run_batch

            made = []

            def test_two_fakes(fake_gameball_factory):
                strict = fake_gameball_factory(customers=["c1"])
                loose = fake_gameball_factory(faults={"http_503": 0.0})
                made.extend([strict, loose])
                assert strict.base_url != loose.base_url
                status = asyncio.run(run_batch(strict))
                assert (status.finished_count, status.error_count) == (1, 2)
                assert asyncio.run(run_batch(loose)).finished_count == 3
                assert (strict.counts["create"], loose.counts["create"]) == (1, 1)

            def test_they_were_closed():
                assert [repr(fake).split()[1] for fake in made] == ["closed", "closed"]
            """
        )
        result = _run(project, *NO_ASYNCIO, *NO_ANYIO)
        result.assert_outcomes(passed=2)

    def test_marker_is_registered(self, project: pytest.Pytester) -> None:
        _ini(project)
        result = _run(project, *NO_ASYNCIO, *NO_ANYIO, "--markers")
        assert result.ret == 0
        result.stdout.fnmatch_lines(["@pytest.mark.fake_gameball(**settings): *"])


class TestCostsNothingUntilUsed:
    def test_loading_the_plugin_imports_neither_the_sdk_nor_aiohttp(self) -> None:
        root = Path(_gameball_async_pytest.__file__).resolve().parent
        code = textwrap.dedent(
            """
            import sys
            import _gameball_async_pytest
            loaded = sorted(m for m in ("gameball_async", "aiohttp") if m in sys.modules)
            assert loaded == [], loaded
            """
        )
        env = {**os.environ, "PYTHONPATH": str(root)}
        done = subprocess.run(
            [sys.executable, "-c", code],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    def test_a_run_that_does_not_use_the_fake_does_not_import_it(
        self, project: pytest.Pytester
    ) -> None:
        _ini(project)
        project.makepyfile(
            test_other="""
            import sys

            def test_nothing_imported(request):
                assert request.config.pluginmanager.has_plugin("_gameball_async_pytest")
                assert "gameball_async" not in sys.modules
                assert "aiohttp" not in sys.modules
            """
        )
        result = _run(project, *NO_ASYNCIO, *NO_ANYIO)
        result.assert_outcomes(passed=1)

    def test_a_broken_sdk_import_fails_only_the_tests_using_the_fake(
        self, project: pytest.Pytester
    ) -> None:
        _ini(project)
        # a package of the same name, found first on sys.path, that cannot be imported
        project.mkpydir("gameball_async").joinpath("__init__.py").write_text(
            'raise ImportError("the SDK is broken here")\n'
        )
        project.makepyfile(
            test_unrelated="""
            def test_unrelated():
                assert 1 + 1 == 2

            def test_uses_the_fake(fake_gameball):
                pass
            """
        )
        result = _run(project, *NO_ASYNCIO, *NO_ANYIO)
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines(["*test_unrelated PASSED*", "*the SDK is broken here*"])

    def test_the_entry_point_names_the_top_level_module(self) -> None:
        # The distribution's pytest11 entry point must name a module outside
        # the package: importing anything inside it imports the SDK first.
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        section = re.search(
            r"^\[project\.entry-points\.pytest11\]\n(?P<body>(?:[^\[\n].*\n|\n)*)",
            pyproject.read_text(encoding="utf-8"),
            re.MULTILINE,
        )
        assert section is not None
        assert re.findall(r'^(\S+) = "([^"]+)"', section["body"], re.MULTILINE) == [
            ("gameball_async", "_gameball_async_pytest")
        ]
