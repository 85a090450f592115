"""What every dataset gives the runner: subjects, a fixed patient-level split and a content hash."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ssl_medbench.datasets.splits import LabelBudget, Split, labelled_subjects


@dataclass(frozen=True)
class Volume:
    """One subject's images and labels, ready for training.

    ``images``: float32 (channels, x, y, z), normalised per subject; ``labels``: uint8 (x, y, z) in
    the dataset's canonical classes (0 = background); ``spacing``: mm per voxel along x, y, z.
    Both are arrays or, read from the preprocessing cache, array-likes
    (:class:`~ssl_medbench.datasets.compact_layout.StoredArray`) with ``shape``, ``dtype``, integer and slice
    indexing (reading only that region) and ``np.asarray`` (the whole array).
    2D image datasets stack one subject's images along z and give each image's class in
    ``slice_classes`` (z,), with all-zero ``labels``.
    """

    subject_id: str
    images: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    slice_classes: np.ndarray | None = None


class Dataset(ABC):
    """A registered dataset: built from its frozen ``Config``, prepared once per run folder."""

    Config: ClassVar[type]
    #: Names of the image channels, in the order of ``Volume.images``.
    channels: ClassVar[tuple[str, ...]]

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the label classes a downstream task predicts: slice classes of 2D image datasets, or the
        foreground labels 1, 2, ... of a label map; empty where the task defines its own (BraTS regions)."""
        return ()

    def __init__(self, config, workdir: Path):
        self.config = config
        self.workdir = workdir

    @classmethod
    @abstractmethod
    def example_config(cls, folder: Path) -> Any:
        """Write a tiny example of the dataset in its real layout under ``folder`` (a handful of subjects, tiny
        images, seconds at most) and return the ``Config`` that reads it: the data of the shipped contract checks
        (:mod:`ssl_medbench.datasets.contract`). Paths in that ``Config`` are strings under ``folder``."""

    @abstractmethod
    def prepare(self) -> None:
        """Generate (phantoms) or index and validate (real data) every subject; raise DataError on bad data."""

    @abstractmethod
    def subject_ids(self) -> list[str]:
        """All subjects, sorted."""

    @abstractmethod
    def load(self, subject_id: str) -> Volume:
        """Decode and normalise one subject."""

    @abstractmethod
    def content_hash(self) -> str:
        """SHA-256 over the dataset's files: any changed byte changes it."""

    @abstractmethod
    def split(self) -> Split:
        """The patient-level train/test split; the test set never depends on the grid's seed or fraction."""

    def labelled_subjects(self, budget: LabelBudget | float, seed: int) -> list[str]:
        """The training subjects whose labels a cell with label ``budget`` (a number: a fraction) may use; nested
        across budgets."""
        return labelled_subjects(self.split().train, budget, seed)
