"""Units of ``gameball-batch``: the parser, the display, messages (no server)."""

from __future__ import annotations

import pytest

import gameball_async
from gameball_async._cli import main


class TestVersion:
    def test_version_flag_prints_the_package_version(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["--version"]) == 0
        assert capsys.readouterr().out == f"gameball-batch {gameball_async.__version__}\n"
