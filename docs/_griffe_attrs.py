"""A griffe extension that gives attrs classes the ``__init__`` attrs generates.

griffe reads source statically and knows dataclasses, not attrs: without this,
an attrs class has no parameters, so its ``:param:`` docstring entries fail
``mkdocs build --strict``. Covers what the package uses: ``attrs.define`` /
``attrs.frozen`` (optionally ``kw_only=True``) and ``attrs.field(default=,
factory=, init=, kw_only=)``.
"""

from __future__ import annotations

from typing import Any

import griffe

_DECORATORS = frozenset({"attrs.define", "attrs.frozen", "attrs.mutable", "attr.s", "attr.attrs"})
_FIELDS = frozenset({"attrs.field", "attr.ib", "attr.attrib"})


def _arguments(expr: object) -> dict[str, Any]:
    if not isinstance(expr, griffe.ExprCall):
        return {}
    return {
        argument.name: argument.value
        for argument in expr.arguments
        if isinstance(argument, griffe.ExprKeyword)
    }


def _attrs_decorator(cls: griffe.Class) -> griffe.Expr | None:
    for decorator in cls.decorators:
        value = decorator.value
        if isinstance(value, griffe.Expr) and value.canonical_path in _DECORATORS:
            return value
    return None


class AttrsInit(griffe.Extension):
    """Synthesise ``__init__`` for attrs classes from their annotated attributes."""

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        decorator = _attrs_decorator(cls)
        if decorator is None or "__init__" in cls.members:
            return
        kw_only = str(_arguments(decorator).get("kw_only")) == "True"
        parameters = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
        for member in list(cls.members.values()):
            if not member.is_attribute or member.is_alias:
                continue
            annotation = member.annotation  # type: ignore[union-attr]
            if annotation is None or "ClassVar" in str(annotation):
                continue
            value = member.value  # type: ignore[union-attr]
            field = (
                _arguments(value)
                if isinstance(value, griffe.ExprCall) and value.canonical_path in _FIELDS
                else None
            )
            if field is not None and str(field.get("init")) == "False":
                continue
            if field is None:
                default = value
            elif "factory" in field:
                default = griffe.ExprCall(function=field["factory"], arguments=[])
            else:
                default = field.get("default")
            keyword = kw_only or (field is not None and str(field.get("kw_only")) == "True")
            parameters.append(
                griffe.Parameter(
                    member.name.lstrip("_"),
                    annotation=annotation,
                    kind=griffe.ParameterKind.keyword_only
                    if keyword
                    else griffe.ParameterKind.positional_or_keyword,
                    default=default,
                )
            )
        init = griffe.Function(
            "__init__",
            lineno=cls.lineno,
            endlineno=cls.endlineno,
            parameters=griffe.Parameters(*parameters),
            returns="None",
        )
        init.labels.add("attrs-generated")
        cls.set_member("__init__", init)
