"""Typed parsing of plain dicts (from YAML) into frozen dataclasses, with errors that name the key.

Used for the grid and for every plugin's ``Config``, so an unknown key or a wrong type anywhere is
one clear line: ``<file>: pretrain.epochs: expected int, got 'ten'``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from ssl_medbench.core.errors import ConfigError


def parse_dataclass(cls: type, data: Any, where: str) -> Any:
    """Build ``cls`` from ``data``; unknown keys, missing required keys and wrong types raise ConfigError. An empty
    value (``finetune:`` or ``--set finetune=``) is refused rather than read as "all defaults": leave the key out."""
    if data is None:
        raise ConfigError(
            f"{where or 'top level'}: expected a mapping of {cls.__name__} settings, got an empty value (null); "
            "leave the key out for the defaults"
        )
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} settings, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(key) for key in data if key not in fields)
    if unknown:
        raise ConfigError(
            f"{where or 'top level'}: unknown key {unknown[0][:60]!r} (expected one of: {', '.join(fields) or 'none'})"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        key = f"{where}.{name}" if where else name
        if name in data:
            values[name] = coerce(hints[name], data[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: missing required key")
    return cls(**values)


def coerce(annotation: Any, value: Any, where: str) -> Any:
    """Check ``value`` against a type annotation (int, float, str, bool, tuple/list/dict, dataclass, Any)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(option, value, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(annotation):
        return parse_dataclass(annotation, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_show(value)}")
        item_type = args[0] if args else Any
        items = [coerce(item_type, item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {_show(value)}")
        value_type = args[1] if len(args) == 2 else Any
        return {str(k): coerce(value_type, v, f"{where}.{k}") for k, v in value.items()}
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}")
        number = float(value) if isinstance(value, float) or abs(value) < 2**1023 else math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {_show(value)}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_show(value)}")
        return value
    raise TypeError(f"{where}: unsupported annotation {annotation!r} in a config dataclass")


def _show(value: Any) -> str:
    """The value's type and repr, cut to a readable length."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
