"""Checking one component's parameters against its config dataclass: known keys, types
(``Literal`` choices, lists, nested dataclasses) and the bounds in each field's metadata
(``ge``, ``gt``, ``le``, ``lt``). Errors are :class:`pk.core.errors.ConfigError` naming the key."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from pk.core.errors import ConfigError, did_you_mean


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _check_value(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` coerced to ``tp`` (int -> float only) or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where} must be one of {', '.join(repr(a) for a in args)}, got {value!r}"
                          f"{did_you_mean(str(value), [str(a) for a in args])}")
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list ({_type_name(tp)}), got {value!r}")
        inner = args[0] if args else Any
        return [_check_value(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        inner = args[1] if len(args) == 2 else Any
        return {k: _check_value(v, inner, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} must be a string, got {value!r} (quote it: \"...\")")
    return value


BOUNDS = {"ge": (">=", lambda v, b: v >= b), "gt": (">", lambda v, b: v > b),
          "le": ("<=", lambda v, b: v <= b), "lt": ("<", lambda v, b: v < b)}


def check_bounds(value: Any, metadata: Mapping[str, Any], where: str) -> None:
    """Refuse numbers outside a field's declared range and non-finite floats.

    A field declares its range in dataclass metadata, e.g.
    ``field(default=1e-3, metadata={"gt": 0, "le": 10})``; lists are checked element-wise.
    ``nan``/``inf`` are refused unless the field has ``metadata={"finite": False}``.
    """
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_bounds(v, metadata, f"{where}[{i}]")
        return
    if isinstance(value, str):
        limit = metadata.get("max_length")
        if limit is not None and len(value) > limit:
            raise ConfigError(f"{where} is {len(value)} characters long; use at most {limit}")
        pattern = metadata.get("pattern")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise ConfigError(f"{where} = {value[:40]!r} may use only the characters {pattern}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value) and metadata.get("finite", True):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    for key, (sign, ok) in BOUNDS.items():
        if key in metadata and math.isfinite(value) and not ok(value, metadata[key]):
            raise ConfigError(f"{where} must be {sign} {metadata[key]}, got {value!r}")


def validate_params(params: Mapping[str, Any], config_cls: type | None, where: str) -> dict[str, Any]:
    """Validate parameters against a config dataclass and fill in defaults."""
    params = dict(params)
    if config_cls is None:
        if params:
            raise ConfigError(f"[{where}] takes no parameters, got {', '.join(sorted(params))}")
        return {}
    hints = typing.get_type_hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    for key in params:
        if key not in fields:
            raise ConfigError(
                f"unknown key {where}.{key}{did_you_mean(key, fields)}; "
                f"valid keys: {', '.join(fields) or 'none'}"
            )
    defaults = dataclasses.asdict(config_cls())
    out: dict[str, Any] = {}
    for name in fields:
        if name in params:
            out[name] = _check_value(params[name], hints.get(name, Any), f"{where}.{name}")
            check_bounds(out[name], fields[name].metadata, f"{where}.{name}")
        else:
            out[name] = defaults[name]
    return out


