"""Command-line flags built from the fields of an attrs class (``serve``'s, from `FakeSettings`).

Each field is one flag, ``--`` + its name in kebab case unless its metadata
names another (key :data:`FLAG`), with the help text of its metadata (key
:data:`HELP`). The flag's shape follows the field's type:

- ``bool`` (or ``bool | None``): ``--name`` / ``--no-name``, and the
  metadata's :data:`NEGATIVE_ALIAS`, an older spelling of ``--no-name``;
- ``int``, ``float``, ``str``: one value (``float | None``: a number or ``none``);
- ``Literal[...]``: one of its values;
- ``tuple[X, X]``: that many values; ``frozenset[X]``: any number of values;
- ``dict[str, X | None] | None``: any number of ``KEY`` or ``KEY=VALUE``;
- another attrs class: one flag per field of it, recursively, prefixed with
  the field's :data:`FLAG` (default ``--name-``).

The default of a flag is the field's. :func:`to_argv` writes a value back as
the flags that differ from the defaults, so parsing them and
:func:`from_namespace` give an equal value.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal

import attrs

__all__ = [
    "FLAG",
    "HELP",
    "NEGATIVE_ALIAS",
    "Flag",
    "add_arguments",
    "flag_metadata",
    "flags_of",
    "from_namespace",
    "to_argv",
]

#: Field metadata key: the one-line help of the field's flag.
HELP: Final = "help"
#: Field metadata key: the flag's option string, when not ``--`` + the field name
#: in kebab case; on a field holding an attrs class, the prefix of its fields' flags.
FLAG: Final = "flag"
#: Field metadata key (booleans): an older option string that sets the field to ``False``.
NEGATIVE_ALIAS: Final = "negative_alias"
#: What an optional value's flag takes for ``None``.
NONE_WORD: Final = "none"

Kind = Literal["bool", "value", "choice", "sequence", "collection", "mapping"]
_NoneType = type(None)


def flag_metadata(
    help_text: str, *, flag: str | None = None, negative_alias: str | None = None
) -> dict[str, str]:
    """The metadata of a field with a flag.

    :param help_text: the flag's help.
    :param flag: its option string (see :data:`FLAG`).
    :param negative_alias: see :data:`NEGATIVE_ALIAS`.
    :return: a mapping for ``attrs.field(metadata=...)``.
    """
    metadata = {HELP: help_text}
    if flag is not None:
        metadata[FLAG] = flag
    if negative_alias is not None:
        metadata[NEGATIVE_ALIAS] = negative_alias
    return metadata


@attrs.frozen(kw_only=True)
class Flag:
    """One flag: where its field is, and how its values are read and written.

    :param path: field names from the root class down to this field.
    :param option: the option string, e.g. ``--processing-rate``.
    :param kind: the flag's shape (see the module docstring).
    :param parse: reads one command-line value.
    :param container: makes a ``sequence`` or ``collection`` value from the values read.
    :param optional: whether the field also takes ``None``.
    :param choices: the values of a ``choice`` flag.
    :param arity: how many values a ``sequence`` flag takes.
    :param default: the field's default.
    :param help: the help text.
    :param negative_alias: see :data:`NEGATIVE_ALIAS`.
    """

    path: tuple[str, ...]
    option: str
    kind: Kind
    parse: Callable[[str], Any] = str
    container: Callable[[list[Any]], Any] = list
    optional: bool = False
    choices: tuple[Any, ...] = ()
    arity: int = 1
    default: Any = None
    help: str = ""
    negative_alias: str | None = None

    @property
    def dest(self) -> str:
        """The ``argparse`` destination: the dotted field path."""
        return ".".join(self.path)


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _default(field: attrs.Attribute[Any]) -> Any:
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return typing.cast("Any", default).factory()
    return default


def _strip_none(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not _NoneType]
        if len(args) == 1:
            return args[0], True
    return hint, False


def _parser_of(hint: Any, where: str) -> Callable[[str], Any]:
    if hint in (int, float, str):
        return typing.cast("Callable[[str], Any]", hint)
    raise TypeError(f"no command-line flag for {where} of type {hint!r}")


def flags_of(cls: type[Any], *, prefix: str = "--", path: tuple[str, ...] = ()) -> list[Flag]:
    """The flags of an attrs class's fields, nested attrs classes expanded.

    :param cls: an attrs class.
    :param prefix: prepended to the kebab-case field names.
    :param path: the field names leading to ``cls`` (empty at the root).
    :return: one :class:`Flag` per leaf field, in field order.
    :raises TypeError: for a field whose type has no flag shape.
    """
    hints = typing.get_type_hints(cls)
    flags: list[Flag] = []
    for field in attrs.fields(cls):
        where = f"{cls.__name__}.{field.name}"
        hint, optional = _strip_none(hints[field.name])
        metadata = field.metadata
        option = metadata.get(FLAG, prefix + _kebab(field.name))
        common: dict[str, Any] = {
            "path": (*path, field.name),
            "option": option,
            "optional": optional,
            "default": _default(field),
            "help": metadata.get(HELP, ""),
        }
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if isinstance(hint, type) and attrs.has(hint):
            nested_prefix = metadata.get(FLAG, f"{prefix}{_kebab(field.name)}-")
            flags.extend(flags_of(hint, prefix=nested_prefix, path=(*path, field.name)))
        elif hint is bool:
            alias = metadata.get(NEGATIVE_ALIAS)
            flags.append(Flag(kind="bool", negative_alias=alias, **common))
        elif origin is Literal:
            flags.append(Flag(kind="choice", choices=args, **common))
        elif origin is tuple and args and Ellipsis not in args and len(set(args)) == 1:
            parse = _parser_of(args[0], where)
            flags.append(
                Flag(kind="sequence", parse=parse, container=tuple, arity=len(args), **common)
            )
        elif origin in (frozenset, set, list) and len(args) == 1:
            parse = _parser_of(args[0], where)
            flags.append(Flag(kind="collection", parse=parse, container=origin, **common))
        elif origin in (dict, Mapping) and len(args) == 2 and args[0] is str:
            value, value_optional = _strip_none(args[1])
            parse = _parser_of(value, where)
            flags.append(
                Flag(kind="mapping", parse=_key_value(parse, value_optional, option), **common)
            )
        else:
            flags.append(Flag(kind="value", parse=_parser_of(hint, where), **common))
    return flags


def _key_value(
    parse: Callable[[str], Any], value_optional: bool, option: str
) -> Callable[[str], tuple[str, Any]]:
    def read(text: str) -> tuple[str, Any]:
        key, sep, raw = text.rpartition("=")
        if not sep:
            if not value_optional:
                raise argparse.ArgumentTypeError(f"{option} takes KEY=VALUE, got {text!r}")
            return text, None
        return key, parse(raw)

    read.__name__ = "KEY[=VALUE]" if value_optional else "KEY=VALUE"
    return read


def _or_none(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        return None if text.lower() == NONE_WORD else parse(text)

    read.__name__ = getattr(parse, "__name__", "value")
    return read


class _StoreDict(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, dict(typing.cast("Sequence[tuple[str, Any]]", values or ())))


def add_arguments(parser: argparse.ArgumentParser, cls: type[Any]) -> list[Flag]:
    """Add one flag per field of ``cls`` to ``parser``.

    :param parser: the parser (or subcommand parser).
    :param cls: an attrs class.
    :return: the flags added.
    """
    flags = flags_of(cls)
    for flag in flags:
        name = flag.path[-1].upper()
        help_text = flag.help or None
        if flag.kind == "bool":
            parser.add_argument(
                flag.option,
                dest=flag.dest,
                action=argparse.BooleanOptionalAction,
                default=flag.default,
                help=help_text,
            )
            if flag.negative_alias is not None:
                parser.add_argument(
                    flag.negative_alias,
                    dest=flag.dest,
                    action="store_false",
                    default=argparse.SUPPRESS,
                    help=f"the same as --no-{flag.option[2:]}",
                )
        elif flag.kind == "choice":
            parser.add_argument(
                flag.option,
                dest=flag.dest,
                choices=flag.choices,
                default=flag.default,
                help=help_text,
            )
        elif flag.kind == "sequence":
            parser.add_argument(
                flag.option,
                dest=flag.dest,
                nargs=flag.arity,
                type=flag.parse,
                default=flag.default,
                metavar=(name,) * flag.arity,
                help=help_text,
            )
        elif flag.kind == "collection":
            parser.add_argument(
                flag.option,
                dest=flag.dest,
                nargs="*",
                type=flag.parse,
                default=None if flag.default is None else sorted(flag.default),
                metavar=name,
                help=help_text,
            )
        elif flag.kind == "mapping":
            parser.add_argument(
                flag.option,
                dest=flag.dest,
                nargs="*",
                type=flag.parse,
                action=_StoreDict,
                default=flag.default,
                metavar=flag.parse.__name__,
                help=help_text,
            )
        else:
            parse = _or_none(flag.parse) if flag.optional else flag.parse
            parser.add_argument(
                flag.option,
                dest=flag.dest,
                type=parse,
                default=flag.default,
                metavar=name,
                help=help_text,
            )
    return flags


def from_namespace(cls: type[Any], namespace: argparse.Namespace) -> Any:
    """Build an instance of ``cls`` from flags parsed by a parser :func:`add_arguments` made.

    :param cls: the attrs class given to :func:`add_arguments`.
    :param namespace: the parsed arguments.
    :return: the instance (its validators run).
    :raises ValueError: when a value is invalid.
    """
    values = vars(namespace)
    kwargs: dict[str, Any] = {}
    for flag in flags_of(cls):
        value = values[flag.dest]
        if flag.kind in ("sequence", "collection") and isinstance(value, list):
            value = flag.container(value)
        level = kwargs
        for name in flag.path[:-1]:
            level = level.setdefault(name, {})
        level[flag.path[-1]] = value
    return _build(cls, kwargs)


def _build(cls: type[Any], kwargs: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        hint, _ = _strip_none(hints[field.name])
        if isinstance(hint, type) and attrs.has(hint) and isinstance(kwargs.get(field.name), dict):
            kwargs[field.name] = _build(hint, kwargs[field.name])
    return cls(**kwargs)


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def to_argv(value: Any) -> list[str]:
    """The flags that give ``value`` back: one per field that differs from its default.

    :param value: an instance of an attrs class.
    :return: the arguments, e.g. ``["--processing-rate=5.0", "--no-enforce-rate-limit"]``.
    :raises ValueError: for a value no flag can express (``None`` for a field
        whose default is not ``None`` and that has no ``none`` word).
    """
    argv: list[str] = []
    for flag in flags_of(type(value)):
        current = value
        for name in flag.path:
            current = getattr(current, name)
        if current == flag.default:
            continue
        if current is None and flag.kind != "value":
            raise ValueError(f"{flag.option} cannot express None")
        if flag.kind == "bool":
            argv.append(flag.option if current else f"--no-{flag.option[2:]}")
        elif flag.kind == "sequence":
            argv += [flag.option, *map(_text, current)]
        elif flag.kind == "collection":
            argv += [flag.option, *sorted(map(_text, current))]
        elif flag.kind == "mapping":
            items = (
                key if item is None else f"{key}={_text(item)}" for key, item in current.items()
            )
            argv += [flag.option, *items]
        elif current is None:
            if not flag.optional:
                raise ValueError(f"{flag.option} cannot express None")
            argv.append(f"{flag.option}={NONE_WORD}")
        else:
            argv.append(f"{flag.option}={_text(current)}")
    return argv
