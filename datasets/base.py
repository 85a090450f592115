"""What every dataset gives the runner: subjects, a fixed patient-level split and a content hash."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from datasets.splits import Split


@dataclass(frozen=True)
class Volume:
    """One subject's images and labels, ready for training.

    ``images``: float32 (channels, x, y, z), normalised per subject; ``labels``: uint8 (x, y, z) in
    the dataset's canonical classes (0 = background); ``spacing``: mm per voxel along x, y, z.
    """

    subject_id: str
    images: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]


class Dataset(ABC):
    """A registered dataset: built from its frozen ``Config``, prepared once per run folder."""

    Config: ClassVar[type]
    #: Names of the image channels, in the order of ``Volume.images``.
    channels: ClassVar[tuple[str, ...]]

    def __init__(self, config, workdir: Path):
        self.config = config
        self.workdir = workdir

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
