"""Dataset registry: real layouts (BraTS, FETAL_PLANES_DB, MedMNIST, MSD, BTCV) and the phantom generators that write them."""

from __future__ import annotations

from ssl_medbench.core.registry import Registry
from ssl_medbench.datasets.base import Dataset, Volume

DATASETS: Registry[type[Dataset]] = Registry("dataset", "ssl_medbench.datasets", Dataset)

from ssl_medbench.datasets import (  # noqa: E402,F401  (register the built-ins)
    abdominal_ct,
    brats,
    fetal_planes,
    medmnist,
    phantom_datasets,
)

__all__ = ["DATASETS", "Dataset", "Volume"]
