"""Dataset registry: real layouts (BraTS folders) and the phantom generators that write them."""

from __future__ import annotations

from benchmark.registry import Registry
from datasets.base import Dataset, Volume


def _check_dataset(name: str, obj: object) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Dataset)):
        raise TypeError(f"dataset plugin {name!r} must be a subclass of datasets.base.Dataset, got {obj!r}")


DATASETS: Registry[type[Dataset]] = Registry("dataset", "ssl_medbench.datasets", validate=_check_dataset)

from datasets.brats import BratsFolder  # noqa: E402
from datasets.brats_phantom import BratsPhantom  # noqa: E402

DATASETS.add("brats", BratsFolder)
DATASETS.add("brats_phantom", BratsPhantom)

__all__ = ["DATASETS", "Dataset", "Volume"]
