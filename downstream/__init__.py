"""Registry of downstream tasks."""

from __future__ import annotations

from ssl_medbench.core.registry import Registry
from ssl_medbench.downstream.base import DownstreamTask

DOWNSTREAM_TASKS: Registry[type[DownstreamTask]] = Registry(
    "downstream task", "ssl_medbench.downstream_tasks", DownstreamTask
)

from ssl_medbench.downstream import (  # noqa: E402,F401  (register the built-ins)
    abdominal_organ_localisation,
    abdominal_organ_segmentation,
    brats_segmentation,
    fetal_plane_classification,
)

__all__ = ["DOWNSTREAM_TASKS", "DownstreamTask"]
