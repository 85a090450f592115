"""One small generic registry for pretext tasks, downstream tasks and datasets.

Built-ins register themselves with ``@REGISTRY.register("name")`` when their package is imported;
third-party plugins are found through a Python entry-point group (one group per registry), loaded
once on first use. A plugin that fails to load is warned about and skipped, never crashing the others.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import warnings
from typing import Callable, Generic, TypeVar

from benchmark.errors import UnknownPluginError

T = TypeVar("T")


class PluginLoadWarning(UserWarning):
    """A third-party plugin's entry point could not be loaded or registered."""


class Registry(Generic[T]):
    """Maps unique names to plugin objects (usually classes) of one kind."""

    def __init__(self, kind: str, entry_point_group: str, validate: Callable[[str, object], None] | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._validate = validate
        self._items: dict[str, T] = {}
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a second registration of a name raises."""

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered (by {self._items[name]!r})")
        if self._validate is not None:
            self._validate(name, obj)
        self._items[name] = obj

    def get(self, name: str) -> T:
        self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            valid = sorted(self._items)
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownPluginError(f"unknown {self.kind} {name!r}{hint} (registered: {', '.join(valid)})") from None

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._items

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for entry_point in importlib.metadata.entry_points(group=self.entry_point_group):
            try:
                obj = entry_point.load()
                # A plugin module may have registered itself on import through the decorator.
                if entry_point.name not in self._items:
                    self.add(entry_point.name, obj)
            except Exception as error:  # a broken plugin must not take the others down
                warnings.warn(
                    f"skipping {self.kind} plugin {entry_point.name!r} from entry point "
                    f"{entry_point.value!r} (group {self.entry_point_group}): {type(error).__name__}: {error}",
                    PluginLoadWarning,
                    stacklevel=2,
                )
