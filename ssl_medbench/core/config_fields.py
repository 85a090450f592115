"""Fields of a plugin ``Config`` that declare what they accept, checked when the grid is read.

A plugin writes ``test_fraction: float = bounded(0.2, low=0, high=1, open_low=True, open_high=True)`` or
``root: str = folder_path()``; the grid's checks (``benchmark.grid.check_plugin_config``) read the declaration from
the field's metadata, so a value out of range or a path the operating system cannot hold is one ``error:`` line
naming the key before any data is read. Fields without a declaration follow the name conventions documented there.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssl_medbench.core.errors import ConfigError

#: Metadata keys of a declared field.
RANGE = "ssl_medbench.range"
PATH = "ssl_medbench.path"

#: Longest file or folder name (bytes) and whole path (bytes) accepted: the common Linux and macOS limits.
NAME_MAX = 255
PATH_MAX = 4096


@dataclass(frozen=True)
class Range:
    """Accepted values: ``low`` <= value <= ``high`` (a bound left out is unbounded; an open bound excludes itself)."""

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def describe(self) -> str:
        low = f"> {self.low}" if self.open_low else f">= {self.low}"
        high = f"< {self.high}" if self.open_high else f"<= {self.high}"
        return " and ".join(part for part, bound in ((low, self.low), (high, self.high)) if math.isfinite(bound))

    def contains(self, value: float) -> bool:
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def check(self, value: float, key: str) -> None:
        if not self.contains(value):
            raise ConfigError(f"{key}: must be {self.describe()}, got {value}")


def bounded(
    default: float,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    open_low: bool = False,
    open_high: bool = False,
) -> Any:
    """A number field with its accepted range."""
    declared = Range(low, high, open_low, open_high)
    if not declared.contains(default):
        raise ValueError(f"default {default} is outside the field's own range ({declared.describe()})")
    return dataclasses.field(default=default, metadata={RANGE: declared})


def folder_path(default: str = "") -> Any:
    """A string field naming a file or folder on this machine (``~`` expanded); empty means "not set"."""
    return dataclasses.field(default=default, metadata={PATH: True})


def declared_range(item: dataclasses.Field) -> Range | None:
    return item.metadata.get(RANGE)


def is_path(item: dataclasses.Field) -> bool:
    return bool(item.metadata.get(PATH))


def user_path(text: str, key: str) -> Path:
    """``text`` as a path with ``~`` expanded; ConfigError naming ``key`` for a path no file system here can hold (a
    NUL character, an unknown ``~user``, a name over 255 bytes, a path over 4096 bytes)."""
    if "\x00" in text:
        raise ConfigError(f"{key}: a path cannot contain a NUL character")
    try:
        path = Path(text).expanduser()
    except RuntimeError:
        user = text.split("/", 1)[0]
        raise ConfigError(f"{key}: {text[:80]!r} starts with {user!r}, but there is no such user here") from None
    long_name = next((part for part in path.parts if len(os.fsencode(part)) > NAME_MAX), None)
    if long_name is not None:
        raise ConfigError(
            f"{key}: the name {long_name[:40]!r}... is {len(os.fsencode(long_name))} bytes long; "
            f"file systems hold at most {NAME_MAX}"
        )
    if len(os.fsencode(str(path.absolute()))) > PATH_MAX:
        raise ConfigError(f"{key}: the path is longer than {PATH_MAX} bytes")
    return path
