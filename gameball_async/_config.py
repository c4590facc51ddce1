"""Configuration of a session: request time limits, and the checks of its base
URL, keys, TLS settings and routes.

Each refuses a bad setting with a ``ValueError`` that names the setting and
never echoes a key.
"""

from __future__ import annotations

import ipaddress
import os
import ssl as ssl_module
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

import aiohttp
import attrs

from ._models import Operation
from ._policy import optional_positive

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_CONNECTION_LIMIT",
    "DEFAULT_TIMEOUT",
    "DEFAULT_TOTAL_TIMEOUT",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "ENV_SECRET_KEY",
    "Timeout",
    "DEFAULT_ROUTES",
    "check_base_url",
    "check_key",
    "check_tls",
    "check_routes",
    "connector_ssl",
    "from_environment",
    "verifies",
]

#: Environment variables read by ``GameballSession()`` for what it is not given.
ENV_API_KEY: Final = "GAMEBALL_API_KEY"
ENV_SECRET_KEY: Final = "GAMEBALL_SECRET_KEY"
ENV_BASE_URL: Final = "GAMEBALL_BASE_URL"

#: Gameball's production base URL for the REST API v4.0 integrations.
DEFAULT_BASE_URL: Final = "https://api.gameball.co/api/v4.0/integrations"

#: Routes relative to the base URL: one per operation, and ``job`` for status and stop.
DEFAULT_ROUTES: Final[Mapping[str, str]] = {
    Operation.CUSTOMERS.value: "/batch/customers",
    Operation.ORDERS.value: "/batch/orders",
    Operation.ORDER_TRANSACTIONS.value: "/batch/orders/transactions",
    Operation.BALANCE_INQUIRY.value: "/batch/balance-inquiry",
    Operation.BALANCE_ADJUSTMENT.value: "/batch/balance-adjustment",
    Operation.CASHBACK.value: "/batch/cashback",
    Operation.REDEEM.value: "/batch/redeem",
    Operation.EVENTS.value: "/batch/events",
    "job": "/batch/{job_id}",
}


def check_key(name: str, value: object) -> str:
    # Never put the value in the message: it may be the secret.
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"{name} contains control characters (CR, LF...): refused")
    return value


def from_environment(value: str | None, name: str, variable: str) -> str:
    """A key given as a parameter, else read from the environment variable.

    :raises ValueError: naming the parameter and the variable (never a value)
        when neither holds a usable key.
    """
    if value is not None:
        return check_key(name, value)
    found = os.environ.get(variable)
    if found is None:
        raise ValueError(f"{name} was not given and the environment variable {variable} is not set")
    return check_key(f"the environment variable {variable} ({name})", found)


def connector_ssl(http_session: aiohttp.ClientSession | None) -> object:
    # aiohttp keeps a connector's ssl= setting private; True is its default
    return getattr(http_session.connector, "_ssl", True) if http_session is not None else True


def verifies(setting: object) -> bool:
    """Whether an aiohttp ``ssl`` setting checks certificates and host names."""
    if isinstance(setting, ssl_module.SSLContext):
        return setting.check_hostname and setting.verify_mode != ssl_module.CERT_NONE
    return setting is True or isinstance(setting, aiohttp.Fingerprint)


def check_tls(
    ssl: ssl_module.SSLContext | None, base_url: str, http_session: aiohttp.ClientSession | None
) -> None:
    """Refuse any TLS setting that would not verify certificates and host names.

    aiohttp uses a borrowed session's connector setting unless ``ssl`` overrides
    it, so that setting is checked too.

    :raises ValueError: for a non-context ``ssl`` or a setting that does not verify.
    """
    if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
        raise ValueError("ssl must be an ssl.SSLContext; verification cannot be turned off")
    setting: object = ssl
    if ssl is None:
        https = base_url.lower().startswith("https:")
        setting = connector_ssl(http_session) if https else True
    if not verifies(setting):
        raise ValueError(
            "certificate verification cannot be turned off: pass an ssl.SSLContext "
            "that verifies (CERT_REQUIRED, check_hostname), e.g. trusting a private CA"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str, allow_insecure: bool) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    if parts.username or parts.password:
        raise ValueError("base_url must not carry credentials; pass api_key and secret_key")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not carry a query or a fragment")
    if parts.scheme == "http" and not allow_insecure and not _is_loopback(parts.hostname):
        raise ValueError(
            "refusing plain http:// to a non-loopback host (the keys would travel in clear); "
            "use https:// or pass allow_insecure=True"
        )
    return base_url.rstrip("/")


def check_routes(overrides: Mapping[str, str] | None) -> dict[str, str]:
    routes = dict(DEFAULT_ROUTES)
    for key, route in (overrides or {}).items():
        name = key.value if isinstance(key, Operation) else key
        if name not in routes:
            raise ValueError(f"unknown route {name!r}; known: {', '.join(routes)}")
        if not route.startswith("/"):
            raise ValueError(f"route {name!r} must start with '/', got {route!r}")
        routes[name] = route
    if "{job_id}" not in routes["job"]:
        raise ValueError("the 'job' route must contain '{job_id}'")
    return routes


DEFAULT_TOTAL_TIMEOUT: Final = 30.0
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_CONNECTION_LIMIT: Final = 32


@attrs.frozen(kw_only=True)
class Timeout:
    """Time limits of one HTTP request (not of a whole ``wait()``).

    :param total: seconds for the whole request, connection to last byte.
    :param connect: seconds to get a connection (pool wait included).
    """

    total: float | None = attrs.field(default=DEFAULT_TOTAL_TIMEOUT, validator=optional_positive)
    connect: float | None = attrs.field(
        default=DEFAULT_CONNECT_TIMEOUT, validator=optional_positive
    )

    def to_aiohttp(self) -> aiohttp.ClientTimeout:
        """The equivalent :class:`aiohttp.ClientTimeout`."""
        return aiohttp.ClientTimeout(total=self.total, connect=self.connect)


#: Per-request limits used when none are given.
DEFAULT_TIMEOUT: Final = Timeout()
