"""`FakeSettings`: every setting of the fake server, in one validated value.

:class:`FakeGameball`, the ``fake_gameball`` pytest fixtures and marker, and
``python -m gameball_async.testing serve`` all take their settings from this
class. Each field carries its command-line help in its metadata, from which
the ``serve`` flags are built (see ``_flags``), so a field added here is a
flag there with no more code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

import attrs

from ._faults import Faults
from ._flags import flag_metadata as _cli

__all__ = [
    "DEFAULT_BASE_PATH",
    "STATUS_SHAPES",
    "FakeSettings",
    "StatusShape",
    "with_overrides",
]

#: ``"mixed"`` picks ``"guide"`` or ``"openapi"`` per reply, seeded.
StatusShape = Literal["guide", "openapi", "mixed"]
STATUS_SHAPES: Final[tuple[str, ...]] = ("guide", "openapi", "mixed")
DEFAULT_BASE_PATH: Final = "/api/v4.0/integrations"

_MAX_PORT: Final = 65535


def _to_float(value: float) -> float:
    # ints become floats (so equal settings print alike); anything else is left
    # for the validator to reject with the field's name
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _finite(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    _check_number(attribute.name, value)


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not _check_number(attribute.name, value) > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not _check_number(attribute.name, value) >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _probability(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= _check_number(attribute.name, value) <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability in 0..1, got {value!r}")


def _integer(low: int | None = None, high: int | None = None) -> Any:
    def check(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{attribute.name} must be an int, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in {low}..{high}"
            raise ValueError(f"{attribute.name} must be {bounds}, got {value!r}")

    return check


def _check_shape(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in STATUS_SHAPES:
        raise ValueError(f"{attribute.name} must be one of {STATUS_SHAPES}, got {value!r}")


def _to_base_path(value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"base_path must be a str, got {value!r}")
    stripped = value.strip("/")
    return "/" + stripped if stripped else ""


def _to_faults(value: Faults | Mapping[str, Any]) -> Faults:
    return Faults(**value) if isinstance(value, Mapping) else value


def _to_customers(
    value: Mapping[str, float | None] | Iterable[str] | None,
) -> dict[str, float | None] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError("customers must be ids or a mapping of id to balance, not a str")
    if isinstance(value, Mapping):
        return {
            key: _to_float(balance) if balance is not None else None
            for key, balance in value.items()
        }
    return dict.fromkeys(value)


def _check_customers(
    _instance: object,
    _attribute: attrs.Attribute[dict[str, float | None] | None],
    value: dict[str, float | None] | None,
) -> None:
    for customer_id, balance in (value or {}).items():
        if not isinstance(customer_id, str):
            raise TypeError(f"customers: ids must be str, got {customer_id!r}")
        if balance is not None:
            _check_number(f"customers[{customer_id!r}]", balance)


_str = attrs.validators.instance_of(str)
_bool = attrs.validators.instance_of(bool)


@attrs.frozen(kw_only=True)
class FakeSettings:
    """Every setting of a :class:`FakeGameball`, validated when made.

    Pass one as ``FakeGameball(settings=...)`` (keyword arguments given beside
    it override its fields), as ``settings=`` to the ``fake_gameball`` marker
    or factory, or as flags to ``python -m gameball_async.testing serve``
    (one flag per field, ``--processing-rate`` for ``processing_rate``, the
    :class:`Faults` fields as ``--fault-*``).

    :param api_key: the accepted ``APIKey``.
    :param secret_key: the accepted ``SecretKey``.
    :param host: interface to bind (use an IP literal).
    :param port: TCP port, 0 for a free one.
    :param processing_rate: items processed per second per running job (> 0).
    :param queue_delay: seconds a job stays ``Queued`` (>= 0).
    :param faults: random fault injection (a :class:`Faults`, or a mapping of
        its fields); :attr:`FakeGameball.faults` can replace it at runtime.
    :param seed: seeds faults, job ids, failed jobs, request ids and mixed shapes.
    :param enforce_rate_limit: reply 429 (code 2002, ``Retry-After`` in whole
        seconds) beyond the documented rate limits, per API key.
    :param rate_per_second: accepted requests allowed in any 1 s (>= 1).
    :param rate_per_window: accepted requests allowed in any ``rate_window`` s (>= 1).
    :param rate_window: the long window, in seconds (> 0).
    :param customers: customers created before serving, as with
        :meth:`FakeGameball.add_customer`: a mapping of id to balance, or ids
        (held as id -> ``None``: each gets ``default_balance``).
    :param customers_must_exist: items of a customer never created (through
        ``customers``, ``/batch/customers`` or :meth:`FakeGameball.add_customer`)
        fail with 7000; ``None`` (the default) means ``True`` when ``customers`` is given.
    :param default_balance: starting balance of a customer not seen before
        (auto-known, or created through ``/batch/customers``).
    :param status_shape: ``"guide"``, ``"openapi"`` or ``"mixed"`` (seeded per reply).
    :param failed_job_rate: probability that a job ends ``Failed`` part-way.
    :param base_path: path prefix of the API routes (held as ``/a/b``, or ``""``).
    :param wall_offset: seconds added to the wall clock behind the replies'
        timestamps (``createdAt``, ``startedAt``): negative plays a server whose
        clock is behind the client's, positive one that is ahead.
    :param report_started_at: with ``False``, status replies carry no
        ``startedAt`` at all.
    :raises ValueError: on an invalid value, naming the field.
    :raises TypeError: on a value of the wrong type, naming the field.
    """

    # the keys stay out of the repr, as every key of the SDK does
    api_key: str = attrs.field(
        default="test-api-key", validator=_str, repr=False, metadata=_cli("the accepted APIKey")
    )
    secret_key: str = attrs.field(
        default="test-secret-key",
        validator=_str,
        repr=False,
        metadata=_cli("the accepted SecretKey"),
    )
    host: str = attrs.field(
        default="127.0.0.1", validator=_str, metadata=_cli("interface to bind (an IP literal)")
    )
    port: int = attrs.field(
        default=0, validator=_integer(0, _MAX_PORT), metadata=_cli("TCP port, 0 picks a free one")
    )
    processing_rate: float = attrs.field(
        default=1000.0,
        converter=_to_float,
        validator=_positive,
        metadata=_cli("items processed per second per running job"),
    )
    queue_delay: float = attrs.field(
        default=0.05,
        converter=_to_float,
        validator=_non_negative,
        metadata=_cli("seconds a job stays Queued"),
    )
    faults: Faults = attrs.field(
        default=Faults(),
        converter=_to_faults,
        validator=attrs.validators.instance_of(Faults),
        metadata=_cli("random fault injection", flag="--fault-"),
    )
    seed: int = attrs.field(
        default=0,
        validator=_integer(),
        metadata=_cli("seeds faults, job ids, failed jobs and request ids"),
    )
    enforce_rate_limit: bool = attrs.field(
        default=True,
        validator=_bool,
        metadata=_cli("reply 429 beyond the rate limits", negative_alias="--no-rate-limit"),
    )
    rate_per_second: int = attrs.field(
        default=30, validator=_integer(1), metadata=_cli("accepted requests allowed in any 1 s")
    )
    rate_per_window: int = attrs.field(
        default=360,
        validator=_integer(1),
        metadata=_cli("accepted requests allowed in any rate window"),
    )
    rate_window: float = attrs.field(
        default=30.0,
        converter=_to_float,
        validator=_positive,
        metadata=_cli("the long rate window, seconds"),
    )
    customers: dict[str, float | None] | None = attrs.field(
        default=None,
        converter=_to_customers,
        validator=_check_customers,
        metadata=_cli("customers created before serving: ID or ID=BALANCE"),
    )
    customers_must_exist: bool | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(_bool),
        metadata=_cli("items of customers never created fail with 7000"),
    )
    default_balance: float = attrs.field(
        default=1000.0,
        converter=_to_float,
        validator=_finite,
        metadata=_cli("starting balance of a customer not seen before"),
    )
    status_shape: StatusShape = attrs.field(
        default="guide", validator=_check_shape, metadata=_cli("shape of status replies")
    )
    failed_job_rate: float = attrs.field(
        default=0.0,
        converter=_to_float,
        validator=_probability,
        metadata=_cli("probability that a job ends Failed part-way"),
    )
    base_path: str = attrs.field(
        default=DEFAULT_BASE_PATH,
        converter=_to_base_path,
        metadata=_cli("path prefix of the API routes"),
    )
    wall_offset: float = attrs.field(
        default=0.0,
        converter=_to_float,
        validator=_finite,
        metadata=_cli("server clock skew of the replies' timestamps, seconds"),
    )
    report_started_at: bool = attrs.field(
        default=True,
        validator=_bool,
        metadata=_cli("status replies carry startedAt", negative_alias="--no-started-at"),
    )

    @property
    def customers_exist_only(self) -> bool:
        """Whether items of a customer never created fail with 7000.

        :return: ``customers_must_exist``, or when ``None``, whether ``customers`` is given.
        """
        if self.customers_must_exist is None:
            return self.customers is not None
        return self.customers_must_exist


def with_overrides(settings: FakeSettings | None, overrides: Mapping[str, Any]) -> FakeSettings:
    """``settings`` (default ``FakeSettings()``) with some fields replaced.

    :param settings: the base settings, or ``None`` for the defaults.
    :param overrides: field name -> value.
    :return: the settings, validated.
    :raises TypeError: when ``settings`` is not a :class:`FakeSettings` or a
        name is not a field of it.
    :raises ValueError: on an invalid value.
    """
    if settings is not None and not isinstance(settings, FakeSettings):
        raise TypeError(f"settings must be a FakeSettings, got {settings!r}")
    unknown = sorted(set(overrides) - set(attrs.fields_dict(FakeSettings)))
    if unknown:
        raise TypeError(f"unknown FakeGameball settings {unknown} (not FakeSettings fields)")
    if settings is None:
        return FakeSettings(**overrides)
    return attrs.evolve(settings, **overrides) if overrides else settings
