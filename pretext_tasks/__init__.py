"""Registry of initialisations: pretext tasks and the no-pretraining baselines."""

from __future__ import annotations

from ssl_medbench.core.registry import Registry
from ssl_medbench.pretext_tasks.base import Initialisation, PretextTask

PRETEXT_TASKS: Registry[type[Initialisation]] = Registry("pretext task", "ssl_medbench.pretext_tasks", Initialisation)

from ssl_medbench.pretext_tasks import (  # noqa: E402,F401  (register the built-ins)
    autoencoder,
    context_prediction,
    context_restoration,
    jigsaw,
    masked_modelling,
    models_genesis,
    random_augmentation,
    random_init,
    relative_position,
    rotation,
    simclr,
    supervised,
)

__all__ = ["PRETEXT_TASKS", "Initialisation", "PretextTask"]
