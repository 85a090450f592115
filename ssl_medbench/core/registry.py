"""One small generic registry for the three plugin kinds: pretext tasks, downstream tasks and datasets.

Built-ins register with the ``@REGISTRY.register("name")`` decorator when their package is imported;
third-party plugins are found through a Python entry-point group (one group per registry), loaded once
on first use. Every plugin, built-in or not, passes the same check (:func:`check_plugin`). A plugin that
fails to load or to pass that check, or whose name is already taken, is warned about by name and
skipped, never crashing the others.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import warnings
from collections.abc import Callable
from typing import Generic, TypeVar

from ssl_medbench.core.errors import UnknownPluginError

T = TypeVar("T", bound=type)

#: Where a built-in plugin comes from, in collision warnings.
BUILT_IN = "ssl-medbench (built-in)"


class PluginLoadWarning(UserWarning):
    """A third-party plugin's entry point could not be loaded or registered."""


class PluginError(TypeError):
    """A plugin class that does not implement its registry's interface."""


def check_plugin(kind: str, name: str, obj: object, base: type) -> None:
    """Raise PluginError unless ``obj`` is a concrete subclass of ``base`` whose ``Config`` is a dataclass."""
    where = f"{kind} plugin {name!r}"
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginError(f"{where} must subclass {base.__module__}.{base.__qualname__}, got {obj!r}")
    missing = sorted(getattr(obj, "__abstractmethods__", ()))
    if missing:
        raise PluginError(f"{where} ({obj.__qualname__}) does not implement {', '.join(missing)}")
    config = getattr(obj, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise PluginError(f"{where} ({obj.__qualname__}) needs a dataclass Config, got {config!r}")


class Registry(Generic[T]):
    """Maps unique names to plugin classes of one kind (subclasses of ``base``)."""

    def __init__(self, kind: str, entry_point_group: str, base: type):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.base = base
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering a class under ``name``; a second registration of a name raises ValueError."""

        def decorator(obj: T) -> T:
            self._add(name, obj, BUILT_IN if obj.__module__.startswith("ssl_medbench.") else obj.__module__)
            return obj

        return decorator

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

    def name_of(self, obj: type) -> str | None:
        """The name ``obj`` is registered under, or None."""
        self._load_entry_points()
        return next((name for name, item in self._items.items() if item is obj), None)

    def origin(self, name: str) -> str:
        """Who registered ``name``: ``BUILT_IN`` or the distribution (or module) of a third-party plugin."""
        self._load_entry_points()
        return self._origins[name]

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._items

    def _add(self, name: str, obj: T, origin: str) -> None:
        if name in self._items:
            raise ValueError(
                f"{self.kind} {name!r} is already registered by {self._origins[name]} ({self._items[name].__qualname__})"
            )
        check_plugin(self.kind, name, obj, self.base)
        self._items[name] = obj
        self._origins[name] = origin

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for entry_point in importlib.metadata.entry_points(group=self.entry_point_group):
            distribution = entry_point.dist.name if entry_point.dist is not None else entry_point.module
            source = f"entry point {entry_point.value!r} of {distribution} (group {self.entry_point_group})"
            try:
                obj = entry_point.load()
            except Exception as error:  # a broken plugin must not take the others down
                self._warn(
                    f"skipping {self.kind} plugin {entry_point.name!r} from {source}: {type(error).__name__}: {error}"
                )
                continue
            existing = self._items.get(entry_point.name)
            if existing is obj:  # the plugin module registered itself on import through the decorator
                self._origins[entry_point.name] = distribution
                continue
            if existing is not None:
                self._warn(
                    f"skipping {self.kind} plugin {entry_point.name!r} from {source}: the name is already taken by "
                    f"{self._origins[entry_point.name]} ({existing.__qualname__}); rename one of them"
                )
                continue
            try:
                self._add(entry_point.name, obj, distribution)
            except PluginError as error:
                self._warn(f"skipping {self.kind} plugin {entry_point.name!r} from {source}: {error}")

    @staticmethod
    def _warn(message: str) -> None:
        warnings.warn(message, PluginLoadWarning, stacklevel=3)
