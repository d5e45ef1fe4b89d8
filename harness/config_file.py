"""`harness run --config FILE`: a TOML file of run options, checked against RunOptions' types
so that a wrongly typed value names the option and the file instead of failing later."""

from __future__ import annotations

import tomllib
import types
import typing
from typing import Any

# How a type reads in an error message.
_TYPE_WORDS = {float: "a number", int: "an integer", str: "a string", bool: "true or false",
               type(None): "absent"}


class ConfigError(ValueError):
    """The file cannot be read, or one of its options is unknown or of the wrong type."""


def load(path: str, options_type: type) -> dict[str, Any]:
    """The options of the TOML file at ``path`` by RunOptions field name, each type-checked."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML: {exc}") from None
    hints = typing.get_type_hints(options_type)
    values: dict[str, Any] = {}
    for k, v in raw.items():
        key = k.replace("-", "_")
        if key not in hints:
            raise ConfigError(f"--config {path}: unknown option {k!r}")
        values[key] = _checked(path, k, v, hints[key])
    return values


def _checked(path: str, name: str, value: Any, hint: Any) -> Any:
    """``value`` if it fits ``hint`` (an int where a float is expected is fine), else ConfigError."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for t in allowed:
        origin = typing.get_origin(t)
        if origin is list:
            (item,) = typing.get_args(t)
            if isinstance(value, list) and all(isinstance(x, item) for x in value):
                return value
        elif t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        elif t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        elif t is str and name.replace("-", "_") == "concurrency" and isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # `concurrency = 10` means what `--concurrency 10` does
        elif t in (str, bool) and type(value) is t:
            return value
    want = " or ".join(_word(t) for t in allowed if t is not type(None))
    raise ConfigError(f"--config {path}: option {name!r} must be {want}, got {value!r}")


def _word(t: Any) -> str:
    if typing.get_origin(t) is list:
        return f"a list of {_word(typing.get_args(t)[0])}s".replace("a list of a ", "a list of ")
    return _TYPE_WORDS.get(t, getattr(t, "__name__", str(t)))
