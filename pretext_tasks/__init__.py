"""Registry of initialisations: pretext tasks and the no-pretraining baselines."""

from __future__ import annotations

from benchmark.registry import Registry
from pretext_tasks.base import Initialisation, PretextTask


def _check_initialisation(name: str, obj: object) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Initialisation)):
        raise TypeError(f"pretext task plugin {name!r} must subclass pretext_tasks.base.Initialisation, got {obj!r}")
    missing = sorted(getattr(obj, "__abstractmethods__", ()))
    if missing:
        raise TypeError(f"pretext task plugin {name!r} does not implement {', '.join(missing)}")


PRETEXT_TASKS: Registry[type[Initialisation]] = Registry("pretext task", "ssl_medbench.pretext_tasks", validate=_check_initialisation)

from pretext_tasks import (  # noqa: E402,F401  (register the built-ins)
    autoencoder,
    context_prediction,
    context_restoration,
    jigsaw,
    random_augmentation,
    random_init,
    relative_position,
)

__all__ = ["PRETEXT_TASKS", "Initialisation", "PretextTask"]
