"""Parameters declared as data, checked and converted by one function.

A selector (and the feature and training settings) declares what each parameter accepts, the way
scikit-learn's ``_parameter_constraints`` does::

    parameters = {
        "alpha": [Interval(float, 0, 1)],
        "window": [Interval(int, 1, None), None],
        "metric": [Options("cosine", "l2", "ip")],
    }

:func:`convert_params` is the one path every value goes through, from the command line (text such as
``"0.5"``, ``"none"``) or from Python (typed values): unknown names, unparsable text and values outside what is
declared all raise :class:`InputError` naming the owner, the parameter, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tasksift.util.errors import InputError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NONE = ("none", "null", "")


@dataclass(frozen=True)
class Interval:
    """A number of ``kind`` (``int`` or ``float``) between ``low`` and ``high`` (``None``: unbounded).

    ``closed``: which ends belong to the interval: ``both``, ``left``, ``right`` or ``neither``."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def parse(self, text: str) -> Any:
        return int(text) if self.kind is int else float(text)

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if isinstance(value, numbers.Integral):
            v: Any = int(value)  # compared exactly: a whole number beyond float range is not infinite
        else:
            v = float(value)
            if not math.isfinite(v):
                return False
        left = self.closed in ("both", "left")
        right = self.closed in ("both", "right")
        if self.low is not None and (v < self.low or (v == self.low and not left)):
            return False
        return not (self.high is not None and (v > self.high or (v == self.high and not right)))

    def normalize(self, value: Any) -> Any:
        return int(value) if self.kind is int else float(value)

    def describe(self) -> str:
        what = "a whole number" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            lo = "[" if self.closed in ("both", "left") else "("
            hi = "]" if self.closed in ("both", "right") else ")"
            return f"{what} in {lo}{_num(self.low)}, {_num(self.high)}{hi}"
        if self.low is not None:
            return f"{what} {'>=' if self.closed in ('both', 'left') else '>'} {_num(self.low)}"
        if self.high is not None:
            return f"{what} {'<=' if self.closed in ('both', 'right') else '<'} {_num(self.high)}"
        return what


@dataclass(frozen=True, init=False)
class Options:
    """One of a fixed set of strings."""

    values: tuple[str, ...]

    def __init__(self, *values: str) -> None:
        object.__setattr__(self, "values", tuple(values))

    def parse(self, text: str) -> str:
        return text

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.values

    def normalize(self, value: Any) -> Any:
        return value

    def describe(self) -> str:
        return "one of " + ", ".join(self.values)


@dataclass(frozen=True)
class Boolean:
    """``True`` or ``False`` (text: true/false, yes/no, on/off, 1/0)."""

    def parse(self, text: str) -> bool:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(text)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    def normalize(self, value: Any) -> Any:
        return bool(value)

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Text:
    """Any string (a field name, a template, a path); ``nonempty`` refuses ``""``."""

    nonempty: bool = False

    def parse(self, text: str) -> str:
        return text

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and (bool(value) or not self.nonempty)

    def normalize(self, value: Any) -> Any:
        return value

    def describe(self) -> str:
        return "a non-empty text" if self.nonempty else "a text"


@dataclass(frozen=True)
class Items:
    """A list of values of ``of`` (text: JSON ``[...]`` or comma-separated)."""

    of: Any = None
    nonempty: bool = True

    def parse(self, text: str) -> list[Any]:
        stripped = text.strip()
        if stripped.startswith("["):
            value = json.loads(stripped)
        else:
            value = [part.strip() for part in stripped.split(",") if part.strip()]
        if not isinstance(value, list):
            raise ValueError(text)
        return value

    def accepts(self, value: Any) -> bool:
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
            return False
        if self.nonempty and len(value) == 0:
            return False
        return self.of is None or all(self.of.accepts(v) for v in value)

    def normalize(self, value: Any) -> Any:
        return list(value)

    def describe(self) -> str:
        inner = f" of {self.of.describe()}" if self.of is not None else ""
        return f"a {'non-empty ' if self.nonempty else ''}list{inner}"


Constraint = Interval | Options | Boolean | Text | Items | None
Declarations = Mapping[str, Sequence[Constraint]]


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else (str(int(x)) if float(x) == int(x) else repr(float(x)))


def describe(constraints: Sequence[Constraint]) -> str:
    """What a parameter accepts, in words: ``a number in [0, 1], or none``."""
    parts = [c.describe() for c in constraints if c is not None]
    if None in constraints:
        parts.append("none")
    return ", or ".join(parts) if parts else "nothing"


def convert_value(owner: str, name: str, value: Any, constraints: Sequence[Constraint]) -> Any:
    """``value`` (text from the command line, or a Python value) as the parameter's type, or InputError."""
    if isinstance(value, str):
        parsed = _from_text(value, constraints)
        if parsed is not _NOTHING:
            return parsed
    else:
        if value is None and None in constraints:
            return None
        for c in constraints:
            if c is not None and c.accepts(value):
                return c.normalize(value)
    raise InputError(f"{owner}: parameter {name}={_show(value)} is not allowed",
                     fix=f"{name} takes {describe(constraints)}")


_NOTHING = object()


def _from_text(text: str, constraints: Sequence[Constraint]) -> Any:
    stripped = text.strip()
    for c in constraints:
        if c is None:
            if stripped.lower() in _NONE:
                return None
            continue
        if isinstance(c, Options | Text):
            if c.accepts(text):
                return text
            continue
        try:
            value = c.parse(stripped)
        except (ValueError, TypeError, json.JSONDecodeError, OverflowError, RecursionError):
            continue
        if c.accepts(value):
            return c.normalize(value)
    return _NOTHING


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def convert_params(owner: str, declarations: Declarations, values: Mapping[str, Any]) -> dict[str, Any]:
    """Every item of ``values`` converted and checked against ``declarations``; unknown names are refused."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in declarations:
            known = ", ".join(sorted(declarations)) or "none"
            raise InputError(f"{owner} has no parameter {name!r}", fix=f"its parameters: {known}")
        out[name] = convert_value(owner, name, value, declarations[name])
    return out


def parse_assignments(items: Sequence[str] | None, option: str) -> dict[str, str]:
    """``["alpha=0.5", "metric=l2"]`` -> ``{"alpha": "0.5", "metric": "l2"}``: the text of repeated
    ``key=value`` options (``option`` names the flag in errors), typed later by :func:`convert_params`."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{option} {item!r} is not key=value", fix=f"write it like {option} name=value")
        if key.strip() in out:
            raise InputError(f"{option} {key.strip()} is given twice", fix="give each setting once")
        out[key.strip()] = value
    return out


def from_type_hints(cls: type) -> dict[str, list[Constraint]]:
    """Declarations read from a dataclass's field types (``int``, ``float``, ``bool``, ``str``,
    ``tuple[str, ...]``, each maybe ``| None``): for settings whose fields need no range beyond their type."""
    out: dict[str, list[Constraint]] = {}
    for field in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[field.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if typing.get_origin(hint) is not tuple else hint
        kind = typing.get_origin(base) or base
        constraint: Constraint = {int: Interval(int), float: Interval(float), bool: Boolean(), str: Text(),
                                  tuple: Items(Text(), nonempty=False), list: Items(nonempty=False)}.get(kind)
        if constraint is None:
            continue
        out[field.name] = [constraint, None] if optional else [constraint]
    return out
