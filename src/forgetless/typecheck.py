"""Type checks for values a user writes in a config file or passes as options, so a quoted
``"false"`` is refused instead of read as true (a non-empty string is truthy)."""

from __future__ import annotations

import types
import typing

from forgetless.errors import ConfigurationError

_NAMES = {bool: "true or false (a boolean, without quotes)", int: "a whole number",
          float: "a number", str: "a quoted string", dict: "a table"}


def matches(value, hint) -> bool:
    """Whether ``value`` fits the annotation ``hint`` (types not listed here are not checked)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(matches(v, args[0]) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, dict):
        return isinstance(value, hint)
    if origin is dict:
        return isinstance(value, dict)
    return True


def describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args if a is not type(None))
    if origin in (list, tuple):
        return f"a list of {describe(args[0]).removeprefix('a ')}s" if args else "a list"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def check_values(values: dict, hints: dict, where: str) -> None:
    """Refuse the first of ``values`` whose type does not fit its annotation in ``hints``."""
    for key, value in values.items():
        if key in hints and not matches(value, hints[key]):
            raise ConfigurationError(
                f"{where}: {key} = {value!r} is a {type(value).__name__}, but {key} must be "
                f"{describe(hints[key])}; write it as one, e.g. without quotes for numbers "
                "and booleans.")
