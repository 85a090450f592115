"""Dataset registry: real layouts (BraTS, FETAL_PLANES_DB, MedMNIST, MSD, BTCV) and the phantom generators that write them."""

from __future__ import annotations

from benchmark.registry import Registry
from datasets.base import Dataset, Volume


def _check_dataset(name: str, obj: object) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Dataset)):
        raise TypeError(f"dataset plugin {name!r} must be a subclass of datasets.base.Dataset, got {obj!r}")


DATASETS: Registry[type[Dataset]] = Registry("dataset", "ssl_medbench.datasets", validate=_check_dataset)

from datasets.abdominal_ct import BTCVFolder, MSDFolder  # noqa: E402
from datasets.brats import BratsFolder  # noqa: E402
from datasets.brats_phantom import BratsPhantom  # noqa: E402
from datasets.ct_phantom import AbdominalCTPhantom  # noqa: E402
from datasets.fetal_phantom import FetalPlanesPhantom  # noqa: E402
from datasets.fetal_planes import FetalPlanesFolder  # noqa: E402
from datasets.medmnist import MedMNISTFile  # noqa: E402

DATASETS.add("brats", BratsFolder)
DATASETS.add("brats_phantom", BratsPhantom)
DATASETS.add("fetal_planes_db", FetalPlanesFolder)
DATASETS.add("fetal_planes_phantom", FetalPlanesPhantom)
DATASETS.add("medmnist", MedMNISTFile)
DATASETS.add("msd", MSDFolder)
DATASETS.add("btcv", BTCVFolder)
DATASETS.add("abdominal_ct_phantom", AbdominalCTPhantom)

__all__ = ["DATASETS", "Dataset", "Volume"]
