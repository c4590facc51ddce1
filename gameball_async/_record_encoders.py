"""Records to checked wire dicts in one pass, by functions generated per class.

A record used to be unstructured by cattrs into a camelCase dict and that dict
then checked field by field: two passes over every item, and a datetime
formatted through two calls. The encoder of a record class reads each
attribute once, tests it inline on the common types (the same tests as the
dict validators of ``_checks.py``, whose checkers word every refusal), formats
datetimes and dates where it stores them, and merges ``extra``; its output is
what the two passes made (``tests/test_record_encoders.py`` holds them equal).

Records of a batch usually share one timestamp object (``now`` computed once),
so each encoder remembers the last UTC datetime it formatted and its text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from ._checks import FAST_CHECKS, Validator, checker, invalid, missing
from ._records import Kind, Spec
from ._wire import format_datetime

__all__ = ["RecordEncoder", "compile_record_encoder"]

#: ``encoder(index, record) -> wire``: the record's checked wire dict (datetimes
#: and dates formatted, ``extra`` merged); refusals name ``index`` and the field.
RecordEncoder = Callable[[int, Any], dict[str, Any]]


def compile_record_encoder(
    fields: Sequence[tuple[str, Spec]],
    *,
    nested: tuple[type[Any], RecordEncoder, Validator] | None = None,
    prefix: str = "",
) -> RecordEncoder:
    """Generate the encoder of one record class.

    :param fields: the class's typed fields, as (attribute name, wire spec).
    :param nested: for a field of kind ``ATTRIBUTES``: the nested record class,
        its encoder, and the validator of the same object given as a mapping.
    :param prefix: put before field names in messages (nested objects).
    """
    namespace: dict[str, Any] = {
        "missing": missing,
        "invalid": invalid,
        "format_datetime": format_datetime,
        "Mapping": Mapping,
        "datetime": datetime,
        "utc": timezone.utc,
        "str": str,
        "float": float,
        "int": int,
        "bool": bool,
        # the last UTC datetime formatted, and its text (read and set as one tuple)
        "last": [(None, "")],
    }
    lines = ["def encode(index, r):", "    wire = {}"]
    for n, (attribute, spec) in enumerate(fields):
        name, field = spec.name, prefix + spec.name
        namespace[f"check_{n}"] = checker(spec.kind)
        refuse = [
            f"problem = check_{n}(v)",
            "if problem is not None:",
            f"    raise invalid(index, {field!r}, problem)",
        ]
        lines += [f"    v = r.{attribute}", "    if v is None:"]
        lines.append(
            f"        raise missing(index, {field!r}, {name!r}, {{}})"
            if spec.required
            else "        pass"
        )
        lines.append("    else:")
        body: list[str]
        if spec.kind is Kind.DATETIME:
            body = [
                "if v.__class__ is datetime and v.tzinfo is utc:",
                "    seen = last[0]",
                "    if seen[0] is v:",
                f"        wire[{name!r}] = seen[1]",
                "    else:",
                '        text = v.isoformat(timespec="milliseconds")[:-6] + "Z"',
                "        last[0] = (v, text)",
                f"        wire[{name!r}] = text",
                "else:",
                *(f"    {line}" for line in refuse),
                f"    wire[{name!r}] = v if isinstance(v, str) else format_datetime(v)",
            ]
        elif spec.kind is Kind.DATE:
            body = [*refuse, f"wire[{name!r}] = v if isinstance(v, str) else v.isoformat()"]
        elif spec.kind is Kind.ATTRIBUTES:
            assert nested is not None, f"{field}: a nested field needs its record class"
            namespace["nested_cls"], namespace["nested_encode"], namespace["nested_validate"] = (
                nested
            )
            body = [
                "if v.__class__ is nested_cls:",
                f"    wire[{name!r}] = nested_encode(index, v)",
                "elif isinstance(v, Mapping):",
                f"    wire[{name!r}] = nested_validate(index, v, False)",
                "else:",
                *(f"    {line}" for line in refuse),
            ]
        else:
            fast = FAST_CHECKS.get(spec.kind)
            if fast is None:
                body = [*refuse]
            else:
                body = [f"if not ({fast}):", *(f"    {line}" for line in refuse)]
            body.append(f"wire[{name!r}] = v")
        lines += [f"        {line}" for line in body]
    lines += [
        "    extra = r.extra",
        "    if extra:",
        "        wire.update(extra)",
        "    return wire",
    ]
    exec("\n".join(lines), namespace)
    encode: RecordEncoder = namespace["encode"]
    return encode
