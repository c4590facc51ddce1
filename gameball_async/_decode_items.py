"""Per-item results in a status reply, in whatever shape the server sends them.

The documented shapes (the guide's ``response.succeeded``/``response.failed``, the
newer spec's ``results``/``errors`` lists) are read without copying; any other
shape (a JSON string, a wrapper object, an object keyed by item index, a single
result object, one list of mixed outcomes) is walked so that no per-item result
is dropped. Results are decoded lazily, when first read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from ._json import make_loads
from ._models import ItemResult, ItemResults

__all__ = ["NO_RESULTS", "code_of", "natural", "read_results", "squash", "text_of"]

# not Final: benchmarks/_common.pure_json swaps in the pure codec
_loads: Callable[[bytes | str], Any] = make_loads()


def squash(word: str) -> str:
    """A key or word folded for comparison: ``"In Progress"`` -> ``"inprogress"``."""
    return word.replace(" ", "").replace("_", "").replace("-", "").casefold()


_SUCCEEDED_KEYS: Final = frozenset(
    {"succeeded", "success", "successes", "succeededresults", "successresults", "results"}
)
_FAILED_KEYS: Final = frozenset(
    {"failed", "failures", "failedresults", "errors", "errorresults", "failure"}
)
# Wrappers around per-item lists: {"items": [...]}, {"data": [...]}, and the outcome keys.
_GROUP_KEYS: Final = (
    _SUCCEEDED_KEYS
    | _FAILED_KEYS
    | frozenset({"items", "data", "entries", "list", "values", "records"})
)
_MAX_NESTING: Final = 4
_MAX_DIGITS: Final = 18
NO_RESULTS: Final = ItemResults()


def natural(value: Any) -> int | None:
    """``value`` as a non-negative int (int, integral float, decimal digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and 0 <= value < 2**63 else None
    if isinstance(value, str):
        text = value.strip()
        # isdigit() alone admits "²"; the length bound keeps int() within its digit limit
        if text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS:
            return int(text)
    return None


def text_of(value: Any) -> str | None:
    """A reply field as text (``None`` stays ``None``)."""
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def code_of(value: Any) -> int | None:
    """An error code given as an int or decimal text, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        # the check lets through "--5" and "²", which int() refuses
        try:
            return int(value)
        except ValueError:
            return None
    return None


class _Keyed:
    """An entry of a results object keyed by item index (``{"3": {...}}``)."""

    __slots__ = ("entry", "index")

    def __init__(self, index: int, entry: Any) -> None:
        self.index = index
        self.entry = entry


def _item(entry: Any, ok: bool) -> ItemResult:
    index: int | None = None
    if isinstance(entry, _Keyed):
        index, entry = entry.index, entry.entry
    if not isinstance(entry, Mapping):
        return ItemResult(index=index, ok=ok, raw=entry)
    own = natural(entry.get("index"))
    if own is not None:
        index = own
    source: Mapping[str, Any] = entry
    nested = entry.get("error")
    if isinstance(nested, Mapping):
        source = nested
    code = code_of(source.get("code", source.get("errorCode")))
    message = text_of(source.get("message", source.get("errorMessage")))
    if message is None and isinstance(nested, str):
        message = nested
    return ItemResult(index=index, ok=ok, code=code, message=message, raw=entry)


def _succeeded(entry: Any) -> ItemResult:
    return _item(entry, True)


def _failed(entry: Any) -> ItemResult:
    return _item(entry, False)


def _is_failure(entry: Any) -> bool:
    """Whether an entry of a list of mixed outcomes reports a failed item."""
    if isinstance(entry, _Keyed):
        entry = entry.entry
    if not isinstance(entry, Mapping):
        return False
    if entry.get("error") or entry.get("errorMessage") is not None:
        return True
    if code_of(entry.get("code", entry.get("errorCode"))) is not None:
        return True
    return entry.get("success") is False or entry.get("ok") is False


def _parsed_text(text: str) -> Any:
    """A results field sent as a JSON string, parsed; ``None`` for any other text."""
    if not text.lstrip().startswith(("[", "{")):
        return None
    try:
        return _loads(text)
    except (ValueError, RecursionError):
        return None


def _keyed(value: Mapping[Any, Any]) -> list[_Keyed] | None:
    entries: list[_Keyed] = []
    for key, entry in value.items():
        index = natural(key) if isinstance(key, (str, int)) else None
        if index is None:
            return None
        entries.append(_Keyed(index, entry))
    return entries


class _Gathered:
    """Raw per-item entries found in a reply, split by outcome."""

    __slots__ = ("failed", "succeeded")

    def __init__(self) -> None:
        self.succeeded: list[Any] = []
        self.failed: list[Any] = []

    def add(self, entries: list[Any], ok: bool | None) -> None:
        if ok is True:
            self.succeeded.extend(entries)
        elif ok is False:
            self.failed.extend(entries)
        else:
            for entry in entries:
                (self.failed if _is_failure(entry) else self.succeeded).append(entry)

    def gather(self, value: Any, ok: bool | None, depth: int = 0) -> None:
        """Add every per-item entry ``value`` holds, in order.

        :param ok: the outcome of entries found here; ``None`` decides per entry.
        """
        if isinstance(value, str):
            value = _parsed_text(value) if depth < _MAX_NESTING else None
        if isinstance(value, list):
            self.add(value, ok)
            return
        if not isinstance(value, Mapping) or not value:
            return  # a scalar where results belong names no item: it stays in ``raw``
        if "index" not in value and "item" not in value and depth < _MAX_NESTING:
            groups = [
                (folded, part)
                for key, part in value.items()
                if isinstance(part, (list, Mapping, str))
                and (folded := squash(str(key))) in _GROUP_KEYS
            ]
            if groups:  # a wrapper: {"items": [...]}, {"succeeded": [...], "failed": [...]}
                for folded, part in groups:
                    if folded in _SUCCEEDED_KEYS:
                        self.gather(part, True, depth + 1)
                    elif folded in _FAILED_KEYS:
                        self.gather(part, False, depth + 1)
                    else:
                        self.gather(part, ok, depth + 1)
                return
            keyed = _keyed(value)
            if keyed is not None:
                self.add(keyed, ok)
                return
        self.add([value], ok)  # one result object on its own


def read_results(payload: Mapping[str, Any]) -> tuple[ItemResults, ItemResults]:
    response = payload.get("response")
    results = payload.get("results")
    errors = payload.get("errors")
    if (
        response is None
        and (results is None or type(results) is list)
        and (errors is None or type(errors) is list)
    ):  # the newer spec's shape, as documented: no copy of the lists
        return _lazy(results or (), True), _lazy(errors or (), False)
    if (
        results is None
        and errors is None
        and isinstance(response, Mapping)
        and len(response) == 2
        and type(response.get("succeeded")) is list
        and type(response.get("failed")) is list
    ):  # the developer guide's shape, as documented
        return _lazy(response["succeeded"], True), _lazy(response["failed"], False)
    found = _Gathered()
    found.gather(response, None)
    found.gather(results, True)
    found.gather(errors, False)
    return _lazy(found.succeeded, True), _lazy(found.failed, False)


def _lazy(entries: Sequence[Any], ok: bool) -> ItemResults:
    if not entries:
        return NO_RESULTS
    # Decoded when read: the poller only needs the counts.
    return ItemResults.lazy(entries, _succeeded if ok else _failed)
