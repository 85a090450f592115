"""The part every file-backed dataset shares: ``prepare()`` decodes each subject once into the ``.npy``
cache and records the content hash; the rest reads cache entries back."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from ssl_medbench.datasets.base import Dataset, Volume
from ssl_medbench.datasets.preprocessing import save_npy

Entry = TypeVar("Entry")


def npy_path(stem: Path, kind: str) -> Path:
    """``<stem>_<kind>.npy`` next to ``stem``: one array of a cached subject."""
    return stem.with_name(f"{stem.name}_{kind}.npy")


class CachedDataset(Dataset, Generic[Entry]):
    """Holds, after ``prepare()``, one cache entry per subject and the dataset's content hash."""

    def __init__(self, config, workdir: Path):
        super().__init__(config, workdir)
        self._entries: dict[str, Entry] | None = None
        self._hash: str | None = None

    def _prepared(self, entries: dict[str, Entry], hash_lines: list[str]) -> None:
        """Record the entries and the SHA-256 over ``hash_lines`` (one line per file with its digest, plus settings)."""
        self._entries = entries
        self._hash = hashlib.sha256("\n".join(hash_lines).encode()).hexdigest()

    def _require_prepared(self) -> dict[str, Entry]:
        if self._entries is None:
            raise RuntimeError("call prepare() before using the dataset")
        return self._entries

    def subject_ids(self) -> list[str]:
        return sorted(self._require_prepared())

    def content_hash(self) -> str:
        self._require_prepared()
        assert self._hash is not None
        return self._hash


@dataclass(frozen=True)
class CachedVolume:
    """A subject's images (C, x, y, z) and labels (x, y, z) as ``<stem>_images.npy`` and ``<stem>_labels.npy``."""

    stem: Path
    spacing: tuple[float, float, float]

    @property
    def images(self) -> Path:
        return npy_path(self.stem, "images")

    @property
    def labels(self) -> Path:
        return npy_path(self.stem, "labels")

    @property
    def complete(self) -> bool:
        return self.images.is_file() and self.labels.is_file()

    def save(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Write both arrays, each atomically."""
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        save_npy(self.images, images)
        save_npy(self.labels, labels)

    def volume(self, subject_id: str) -> Volume:
        """The cached arrays, memory-mapped."""
        return Volume(
            subject_id, np.load(self.images, mmap_mode="r"), np.load(self.labels, mmap_mode="r"), self.spacing
        )
