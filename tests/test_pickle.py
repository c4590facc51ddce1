"""Every public exception and model round-trips through pickle (issue 9, point 18).

multiprocessing and Celery pickle what a task returns or raises. The classes are
found in ``gameball_async.__all__`` and their sample instances are built from
their constructors' type hints, so a class added later is covered without a line
here; a public class this file cannot build fails the test by name.
"""

from __future__ import annotations

import collections.abc
import enum
import inspect
import pickle
import sys
import types
import typing
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any

import attrs
import pytest

import gameball_async
from gameball_async import (
    AmbiguousSubmissionError,
    BatchFailedError,
    BatchJob,
    BatchState,
    BatchStatus,
    GameballError,
    GameballSession,
    ItemResult,
    ItemResults,
    Operation,
    SessionClosedError,
    SubmissionError,
    TransportError,
)
from gameball_async._decode import decode_status

WHEN = datetime(2024, 10, 16, 8, 13, 29, 290000, tzinfo=timezone.utc)
SECRET = "secret-key-that-must-not-travel"

# Public classes that are not values: they hold connections, keys or a session.
NOT_VALUES: dict[str, str] = {
    "GameballSession": "owns connections and keys; each process opens its own",
    "BatchJob": "a handle on a session; to_token() and gb.resume() carry it across",
}


def _public_classes() -> list[type[Any]]:
    objects = (getattr(gameball_async, name) for name in gameball_async.__all__)
    return [obj for obj in objects if isinstance(obj, type)]


VALUE_CLASSES = [cls for cls in _public_classes() if cls.__name__ not in NOT_VALUES]


# -- samples built from type hints -----------------------------------------------------


class NoSample(LookupError):
    """This file does not know how to build a value of a type."""


def _session() -> GameballSession:
    return GameballSession("api-key", SECRET)  # never opened: no loop, no socket


def _job() -> BatchJob:
    status = _sample_of(BatchStatus)
    return BatchJob(_session(), "17", Operation.CASHBACK, status, input_range=range(3, 6))


SAMPLES: dict[Any, Callable[[], Any]] = {
    str: lambda: "text",
    int: lambda: 7,
    float: lambda: 2.5,
    bool: lambda: True,
    datetime: lambda: WHEN,
    date: lambda: date(2024, 10, 16),
    range: lambda: range(3, 6),
    Any: lambda: {"entry": [1, "two"]},
    object: lambda: {"entry": [1, "two"]},
    BaseException: lambda: TransportError("connection reset"),
    Exception: lambda: TransportError("connection reset"),
    BatchJob: _job,
    # a terminal status with results, as decoded: its ``raw`` is the reply itself
    BatchStatus: lambda: decode_status(
        {
            "jobId": 17,
            "status": "Failed",
            "totalCount": 3,
            "finishedCount": 1,
            "errorCount": 2,
            "createdAt": "2024-10-16T08:13:29.290Z",
            "response": {
                "succeeded": [{"index": 0, "result": {"points": 5}}],
                "failed": [{"index": 1, "code": 7000}, {"index": 2, "code": 9008}],
            },
        },
        job_id="17",
        operation=Operation.CASHBACK,
    ),
}


def _namespace() -> dict[str, Any]:
    # every module of the package, so hints naming types from any of them resolve;
    # module objects are left out: one module's ``import datetime`` must not shadow
    # another's ``from datetime import datetime`` (a hint is never a module)
    namespace: dict[str, Any] = {}
    for name, module in sorted(sys.modules.items()):
        if name.startswith("gameball_async.") and module is not None:
            namespace.update(
                (key, value)
                for key, value in vars(module).items()
                if not isinstance(value, types.ModuleType)
            )
    namespace.update(vars(gameball_async))
    namespace.update(vars(collections.abc))
    namespace.update(vars(typing))
    return namespace


NAMESPACE = _namespace()


def _sample(hint: Any, top: bool = True) -> Any:
    """A value of the type ``hint``; mappings at the top are read-only proxies (the
    case that did not pickle)."""
    if hint in SAMPLES:
        return SAMPLES[hint]()
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _sample(next(arg for arg in args if arg is not type(None)), top)
    if origin is typing.Literal:
        return args[-1]
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable):
        return [_sample(args[0], False)] if args else ["entry"]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return (_sample(args[0], False),)
        return tuple(_sample(arg, False) for arg in args)
    if origin in (dict, collections.abc.Mapping):
        key, value = args or (str, Any)
        mapping = {f"{_sample(key, False)}Extra": _sample(value, False)}
        return types.MappingProxyType(mapping) if top else mapping
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return list(hint)[-1]  # not the first member: a default would hide a loss
    if isinstance(hint, type):
        return _sample_of(hint)
    raise NoSample(f"no sample for the type {hint!r}")


def _sample_of(cls: type[Any]) -> Any:
    """An instance of ``cls`` with every constructor parameter given a value.

    Optional parameters get a sample too where the class accepts it (a policy's
    validators refuse some), else their default.
    """
    if cls in SAMPLES:
        return SAMPLES[cls]()
    if issubclass(cls, enum.Enum):
        return list(cls)[-1]
    init = cls.__init__
    try:
        hints = typing.get_type_hints(init, globalns=NAMESPACE, localns=NAMESPACE)
    except NameError as exc:
        raise NoSample(f"cannot read the constructor hints of {cls.__name__}: {exc}") from exc
    required: dict[str, Any] = {}
    optional: dict[str, Any] = {}
    positional: list[Any] = []
    for name, parameter in inspect.signature(init).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name not in hints:
            raise NoSample(f"{cls.__name__}.__init__ parameter {name!r} has no type hint")
        try:
            value = _sample(hints[name])
        except NoSample as exc:
            raise NoSample(f"{cls.__name__}({name}=...): {exc}") from exc
        if parameter.default is not parameter.empty:
            optional[name] = value
        elif parameter.kind is parameter.POSITIONAL_ONLY:
            positional.append(value)
        else:
            required[name] = value
    try:
        return cls(*positional, **required, **optional)
    except (ValueError, TypeError):
        pass
    instance = cls(*positional, **required)
    for name, value in optional.items():  # one at a time: keep each the class takes
        try:
            instance = cls(*positional, **required, **{**_given(instance, optional), name: value})
        except (ValueError, TypeError):
            continue
    return instance


def _given(instance: Any, optional: dict[str, Any]) -> dict[str, Any]:
    """The optional arguments an instance was built with (read back from it)."""
    return {name: getattr(instance, name) for name in optional if hasattr(instance, name)}


def _fill_class_attributes(instance: Any) -> None:
    """Set attributes a class declares but does not take (``RateLimitError.retry_after``)."""
    hints = typing.get_type_hints(type(instance), globalns=NAMESPACE, localns=NAMESPACE)
    for name, hint in hints.items():
        if name not in vars(instance):
            setattr(instance, name, _sample(hint))


def sample(cls: type[Any]) -> Any:
    instance = _sample_of(cls)
    if isinstance(instance, BaseException):
        _fill_class_attributes(instance)
        if sys.version_info >= (3, 11):  # add_note is 3.11+
            instance.add_note("a note added on the way")
    return instance


# -- comparing what came back -------------------------------------------------------


def assert_same(before: Any, after: Any, where: str = "value") -> None:
    assert type(after) is type(before), where
    if isinstance(before, BaseException):
        assert after.args == before.args, where
        assert str(after) == str(before), where
        assert set(vars(after)) == set(vars(before)), where
        for name, value in vars(before).items():
            assert_same(value, vars(after)[name], f"{where}.{name}")
    elif isinstance(before, BatchJob):
        for name in ("job_id", "operation", "input_range", "status"):
            assert_same(getattr(before, name), getattr(after, name), f"{where}.{name}")
    elif attrs.has(type(before)):
        assert after == before, where
        for field in attrs.fields(type(before)):  # raw and the like are eq=False
            name = field.name
            assert_same(getattr(before, name), getattr(after, name), f"{where}.{name}")
    elif isinstance(before, (ItemResults, list, tuple)):
        assert len(after) == len(before), where
        for position, (one, two) in enumerate(zip(before, after, strict=True)):
            assert_same(one, two, f"{where}[{position}]")
    elif isinstance(before, collections.abc.Mapping):
        assert dict(after) == dict(before), where
    else:
        assert after == before, where


def round_trip(value: Any) -> Any:
    data = pickle.dumps(value)
    assert SECRET.encode() not in data  # nothing drags a session along
    return pickle.loads(data)


# -- the tests ----------------------------------------------------------------------


def test_every_public_class_is_a_value_or_declared_not_one() -> None:
    for cls in _public_classes():
        if cls.__name__ in NOT_VALUES:
            continue
        value_like = (
            issubclass(cls, BaseException)
            or attrs.has(cls)
            or issubclass(cls, enum.Enum)
            or cls is ItemResults
        )
        assert value_like, f"{cls.__name__}: a model (and pickled here) or in NOT_VALUES?"


@pytest.mark.parametrize("cls", VALUE_CLASSES, ids=lambda cls: cls.__name__)
def test_round_trip(cls: type[Any]) -> None:
    try:
        value = sample(cls)
    except NoSample as exc:
        pytest.fail(f"cannot build a sample {cls.__name__} to pickle: {exc}")
    assert_same(value, round_trip(value), cls.__name__)


@pytest.mark.parametrize("cls", VALUE_CLASSES, ids=lambda cls: cls.__name__)
def test_samples_are_not_all_defaults(cls: type[Any]) -> None:
    """A round trip of defaults only would not see a field lost on the way."""
    if issubclass(cls, enum.Enum) or not attrs.has(cls):
        return
    value = sample(cls)
    changed = [
        field.name
        for field in attrs.fields(cls)
        if field.default is attrs.NOTHING or getattr(value, field.name) != field.default
    ]
    assert changed, cls.__name__


def test_the_errors_of_the_issue() -> None:
    # BatchFailedError: its status's default raw is a MappingProxyType
    status = BatchStatus(job_id="1", operation=None, state=BatchState.FAILED, state_word="F")
    failed = BatchFailedError("job 1 failed", status=status)
    copy = round_trip(failed)
    assert copy.status == status
    assert isinstance(copy.status.raw, types.MappingProxyType)
    # AmbiguousSubmissionError: a keyword-only constructor
    items = [{"customerId": "c1"}]
    ambiguous = AmbiguousSubmissionError("maybe", operation=Operation.REDEEM, items=items)
    again = round_trip(ambiguous)
    assert (again.operation, again.items, str(again)) == (Operation.REDEEM, items, "maybe")


class _LaterError(SubmissionError):
    """Stands for an error class added later, with fields of its own."""

    def __init__(self, message: str, *, attempts: int, **rest: Any) -> None:
        super().__init__(message, **rest)
        self.attempts = attempts


def test_a_subclass_with_its_own_keyword_fields_pickles() -> None:
    error = _LaterError("late", attempts=3, jobs=[_job()], failed=[])
    error.pending = range(10, 20)  # type: ignore[attr-defined]
    copy = round_trip(error)
    assert (copy.attempts, copy.pending, copy.failed) == (3, range(10, 20), [])


@pytest.mark.anyio
async def test_jobs_in_an_error_come_back_detached() -> None:
    job = _job()
    error = SubmissionError("2 of 3 chunks sent", jobs=[job], failed=[([{"a": 1}], job_error())])
    (copy,) = round_trip(error).jobs
    assert (copy.job_id, copy.operation, copy.input_range) == (
        "17",
        Operation.CASHBACK,
        range(3, 6),
    )
    assert copy.done()
    assert copy.to_token() == job.to_token()
    # the status was terminal: waiting needs no session
    status = await copy.wait(raise_on_failure=False)
    assert status.state is BatchState.FAILED
    with pytest.raises(SessionClosedError, match="unpickled"):
        await copy.refresh()
    running = BatchJob(_session(), "18", None, None)
    (detached,) = round_trip(SubmissionError("x", jobs=[running], failed=[])).jobs
    with pytest.raises(SessionClosedError, match=r"gb\.resume"):
        await detached.wait(timeout=1)


def job_error() -> GameballError:
    return AmbiguousSubmissionError("maybe", operation=Operation.CASHBACK, items=[{"a": 1}])


@pytest.mark.parametrize("lazy", [True, False])
def test_item_results_lazy_or_not(lazy: bool) -> None:
    status = SAMPLES[BatchStatus]()
    if not lazy:
        list(status.failed)  # decoded before pickling
    copy = round_trip(status)
    assert copy == status
    assert [(r.index, r.code, r.raw) for r in copy.failed] == [
        (1, 7000, {"index": 1, "code": 7000}),
        (2, 9008, {"index": 2, "code": 9008}),
    ]
    assert copy.raw == status.raw


def test_a_status_decoded_without_results_pickles() -> None:
    reply = {"jobId": 3, "status": "Running", "totalCount": 2, "results": [{"index": 0}]}
    status = decode_status(reply, job_id="3", results=False)
    assert round_trip(status) == status


def test_read_only_mappings_inside_records_come_back_read_only() -> None:
    record = gameball_async.Customer(
        customer_id="c1", extra=types.MappingProxyType({"newField": 1})
    )
    copy = round_trip(record)
    assert copy == record
    assert isinstance(copy.extra, types.MappingProxyType)


def test_item_result_holds_any_raw() -> None:
    result = ItemResult(index=None, ok=True, raw=types.MappingProxyType({"orderId": "o-1"}))
    assert round_trip(result).raw == {"orderId": "o-1"}


class TestNoKeysInPickles:
    """A session never pickles, and a job handle pickles without its session."""

    def test_a_session_refuses_pickling_without_showing_a_key(self) -> None:
        gb = GameballSession("pickle-api-key", "pickle-secret-key")
        with pytest.raises(TypeError, match="cannot be pickled") as caught:
            pickle.dumps(gb)
        assert "pickle-secret-key" not in str(caught.value)

    @pytest.mark.anyio
    async def test_a_job_handle_pickles_detached_and_without_the_keys(self) -> None:
        gb = GameballSession("pickle-api-key", "pickle-secret-key")
        job = gb.job("5", "cashback")
        data = pickle.dumps(job)
        assert b"pickle-secret-key" not in data
        assert b"pickle-api-key" not in data
        back = pickle.loads(data)
        assert (back.job_id, back.operation) == ("5", job.operation)
        assert back.to_token() == job.to_token()
        with pytest.raises(SessionClosedError, match="resume"):
            await back.wait()
