"""Registry of downstream tasks."""

from __future__ import annotations

from benchmark.registry import Registry
from downstream.base import DownstreamTask


def _check_downstream(name: str, obj: object) -> None:
    if not (isinstance(obj, type) and issubclass(obj, DownstreamTask)):
        raise TypeError(f"downstream task plugin {name!r} must subclass downstream.base.DownstreamTask, got {obj!r}")


DOWNSTREAM_TASKS: Registry[type[DownstreamTask]] = Registry("downstream task", "ssl_medbench.downstream_tasks", validate=_check_downstream)

from downstream import abdominal_organ_localisation, brats_segmentation, fetal_plane_classification  # noqa: E402,F401  (register the built-ins)

__all__ = ["DOWNSTREAM_TASKS", "DownstreamTask"]
