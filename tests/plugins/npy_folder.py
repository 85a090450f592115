"""A minimal third-party dataset that meets the contract: a folder of ``<subject>.npy`` images (X, Y, Z), no labels."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssl_medbench.datasets.base import Dataset, Volume
from ssl_medbench.datasets.file_hashes import file_sha256
from ssl_medbench.datasets.preprocessing import normalise
from ssl_medbench.datasets.splits import Split, split_subjects


class NpyFolder(Dataset):
    channels = ("image",)

    @dataclass(frozen=True)
    class Config:
        root: str = ""
        test_fraction: float = 0.25

    @classmethod
    def example_config(cls, folder: Path) -> Config:
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(6):
            np.save(folder / f"case{index}.npy", np.random.default_rng(index).random((8, 8, 4), np.float32))
        return cls.Config(root=str(folder))

    def prepare(self) -> None:
        self.files = {path.stem: path for path in sorted(Path(self.config.root).glob("*.npy"))}

    def subject_ids(self) -> list[str]:
        return sorted(self.files)

    def content_hash(self) -> str:
        return hashlib.sha256(" ".join(f"{s}:{file_sha256(p)}" for s, p in self.files.items()).encode()).hexdigest()

    def split(self) -> Split:
        return split_subjects(self.subject_ids(), self.config.test_fraction, split_seed=0)

    def load(self, subject_id: str) -> Volume:
        image = np.load(self.files[subject_id])
        return Volume(subject_id, normalise(image[None]), np.zeros(image.shape, np.uint8), (1.0, 1.0, 1.0))
