"""What the shipped plugin contracts share: a table of named checks whose failures name the plugin and the check.

Each contract (``ssl_medbench.<kind>.contract``) fills its own table with :func:`contract_check`; a check that
meets any error raises AssertionError("<kind> 'name' (Class) fails contract check 'check': reason"), so a
third party's test output says which plugin broke which promise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from ssl_medbench.core.registry import Registry

Check = TypeVar("Check", bound=Callable[..., None])


def expect(condition: bool, message: str) -> None:
    """AssertionError(``message``) unless ``condition``; unlike ``assert`` it also runs under ``python -O``."""
    if not condition:
        raise AssertionError(message)


def describe_plugin(registry: Registry[Any], cls: type) -> str:
    """``<kind> 'name' (Class)`` for a registered plugin, ``<kind> Class`` for one that is not (yet) registered."""
    name = registry.name_of(cls)
    return f"{registry.kind} {name!r} ({cls.__qualname__})" if name else f"{registry.kind} {cls.__qualname__}"


def contract_check(
    checks: dict[str, Callable[..., None]], registry: Registry[Any], name: str
) -> Callable[[Check], Check]:
    """Decorator adding a check ``(cls, ...) -> None`` to ``checks`` under ``name``; any error it meets becomes an
    AssertionError naming the plugin (:func:`describe_plugin`) and the check."""

    def register(function: Check) -> Check:
        @functools.wraps(function)
        def check(cls: type, *args: Any, **kwargs: Any) -> None:
            try:
                function(cls, *args, **kwargs)
            except Exception as error:
                reason = str(error) if isinstance(error, AssertionError) else f"{type(error).__name__}: {error}"
                raise AssertionError(
                    f"{describe_plugin(registry, cls)} fails contract check {name!r}: {reason}"
                ) from error

        checks[name] = check
        return check  # type: ignore[return-value]

    return register
