"""What a session takes from its environment (issue 12 points 1 and 5): keys
and base URL from environment variables, and the User-Agent it sends."""

from __future__ import annotations

import re
import sys

import aiohttp
import pytest
from _support import make_session

from gameball_async import DEFAULT_BASE_URL, GameballSession, RateLimit, __version__
from gameball_async.testing import FakeGameball

ITEMS = [{"customerId": "c1"}]
SECRET = "sk-from-the-environment-0123456789"
API_KEY = "ak-from-the-environment-9876543210"


# -- keys and base URL from the environment --------------------------------------------


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("GAMEBALL_API_KEY", "GAMEBALL_SECRET_KEY", "GAMEBALL_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.anyio
async def test_no_keys_given_reads_the_environment(
    fake: FakeGameball, clean_environment: pytest.MonkeyPatch
) -> None:
    clean_environment.setenv("GAMEBALL_API_KEY", fake.api_key)
    clean_environment.setenv("GAMEBALL_SECRET_KEY", fake.secret_key)
    clean_environment.setenv("GAMEBALL_BASE_URL", fake.base_url)
    async with GameballSession(rate_limit=RateLimit.disabled()) as gb:
        assert gb.base_url == fake.base_url
        await gb.create_batch("balance-inquiry", ITEMS)
    [request] = fake.requests
    assert request.headers["APIKey"] == fake.api_key
    assert request.headers["SecretKey"] == fake.secret_key


def test_the_default_base_url_without_the_variable(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("GAMEBALL_API_KEY", API_KEY)
    clean_environment.setenv("GAMEBALL_SECRET_KEY", SECRET)
    assert GameballSession().base_url == DEFAULT_BASE_URL


def test_given_values_win_over_the_environment(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("GAMEBALL_BASE_URL", "https://from.env.example/api")
    gb = GameballSession(API_KEY, SECRET, base_url="https://given.example/api")
    assert gb.base_url == "https://given.example/api"


@pytest.mark.parametrize(
    ("present", "missing", "parameter"),
    [
        ("GAMEBALL_SECRET_KEY", "GAMEBALL_API_KEY", "api_key"),
        ("GAMEBALL_API_KEY", "GAMEBALL_SECRET_KEY", "secret_key"),
    ],
)
def test_a_missing_key_names_the_variable(
    clean_environment: pytest.MonkeyPatch, present: str, missing: str, parameter: str
) -> None:
    clean_environment.setenv(present, SECRET)
    with pytest.raises(ValueError, match=missing) as info:
        GameballSession()
    assert parameter in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("bad", ["", "   ", "sk-with\r\nX-Injected: 1"])
def test_a_bad_key_in_the_environment_names_the_variable_not_the_value(
    clean_environment: pytest.MonkeyPatch, bad: str
) -> None:
    clean_environment.setenv("GAMEBALL_API_KEY", API_KEY)
    clean_environment.setenv("GAMEBALL_SECRET_KEY", bad)
    with pytest.raises(ValueError, match="GAMEBALL_SECRET_KEY") as info:
        GameballSession()
    if bad.strip():
        assert bad not in str(info.value)
        assert "sk-with" not in str(info.value)


# -- the User-Agent --------------------------------------------------------------------


def _expected_user_agent() -> str:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    http = ".".join(aiohttp.__version__.split(".")[:2])
    return f"gameball_async/{__version__} Python/{python} aiohttp/{http}"


@pytest.mark.anyio
@pytest.mark.parametrize("borrowed", [False, True], ids=["owned", "borrowed"])
async def test_every_request_names_the_client(fake: FakeGameball, borrowed: bool) -> None:
    lent = aiohttp.ClientSession(headers={"User-Agent": "the-lenders-agent"}) if borrowed else None
    try:
        async with make_session(fake, http_session=lent) as gb:
            job = await gb.create_batch("balance-inquiry", ITEMS)
            await gb.get_status(job.job_id)
            await gb.stop(job.job_id)
    finally:
        if lent is not None:
            await lent.close()
    agents = {request.headers.get("User-Agent") for request in fake.requests}
    assert agents == {_expected_user_agent()}
    assert re.fullmatch(r"gameball_async/\S+ Python/\d+\.\d+ aiohttp/\d+\.\d+", agents.pop() or "")
