"""The part every file-backed dataset shares: ``prepare()`` decodes each subject once into the ``.npy`` cache and
records the content hash; the rest reads cache entries back.

A cache entry is trusted only as written: ``<stem>.json``, written last, records the size, modification time and
SHA-256 of each of its arrays. ``prepare()`` compares sizes and times (a ``stat``, so preparing a large cache reads
nothing) and computes a digest only for a file whose time changed; a truncated, edited or zeroed array is decoded
again from the source, with a one-line note on stderr naming the file. An edit that keeps the file's size and
modification time (set back on purpose, or made within one tick of the file system's clock after the cache was
written) is not seen.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from tqdm.auto import tqdm

from ssl_medbench.core.atomic import atomic_path
from ssl_medbench.core.parallel import map_in_processes
from ssl_medbench.core.progress import progress_bar
from ssl_medbench.datasets.base import Dataset, Volume
from ssl_medbench.datasets.compact_layout import (
    LAYOUT_VERSION,
    Crop,
    StoredArray,
    encode_images,
    encode_labels,
    foreground_crop,
    map_npy,
    npy_header,
    stored_layout_problem,
)
from ssl_medbench.datasets.file_hashes import file_sha256
from ssl_medbench.datasets.preprocessing import save_npy

Entry = TypeVar("Entry")


def cache_key(*parts: object) -> str:
    """The 16 hex digits naming a subject's cache entry: a digest of ``parts`` (its files' digests and the settings
    that shape its arrays) and of :data:`LAYOUT_VERSION`, so an entry of an earlier layout is rebuilt, not misread."""
    return hashlib.sha256(json.dumps([LAYOUT_VERSION, *parts], sort_keys=True).encode()).hexdigest()[:16]


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

    def _decode(self, stale: list, write: Callable[[Any], None], folder: str, unit: str) -> None:
        """``write`` each of ``stale`` (the entries missing from the cache, or changed) in the preparation workers
        (:mod:`ssl_medbench.core.parallel`), with one progress bar."""
        if stale:
            with progress_bar(total=len(stale), desc=f"decoding {folder}", unit=unit) as bar:
                map_in_processes(write, stale, bar)

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


def _fingerprint(path: Path) -> dict[str, int]:
    """What a ``stat`` tells of a file's content: its size and modification time (ns)."""
    status = path.stat()
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


def _fingerprint_of(entry: dict) -> dict[str, int | None]:
    return {"size": entry.get("size"), "mtime_ns": entry.get("mtime_ns")}


def _note(path: Path, problem: str) -> None:
    tqdm.write(f"note: {path}: {problem}; decoding its subject again from the source files", file=sys.stderr)


@dataclass(frozen=True)
class CacheEntry:
    """One subject's arrays as ``<stem>_<kind>.npy``, one per name in ``kinds``, and ``<stem>.json`` recording the
    size and SHA-256 of each."""

    stem: Path
    kinds: ClassVar[tuple[str, ...]] = ("images", "labels")

    def path(self, kind: str) -> Path:
        return npy_path(self.stem, kind)

    @property
    def record(self) -> Path:
        return self.stem.with_name(f"{self.stem.name}.json")

    def save(self, layout: dict | None = None, **arrays: np.ndarray) -> None:
        """Write each array atomically, then the record of their sizes and digests (and ``layout``, if given)."""
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        record = {} if layout is None else {"layout": layout}
        for kind in self.kinds:
            path = self.path(kind)
            save_npy(path, arrays[kind])
            record[kind] = _fingerprint(path) | {"sha256": file_sha256(path)}
        self._write_record(record)

    def _write_record(self, record: dict) -> None:
        with atomic_path(self.record) as temporary:
            temporary.write_text(json.dumps(record, indent=1))

    def intact(self) -> bool:
        """Whether the entry is complete and every array has its recorded size and digest; a note on stderr names
        the file that has not (an entry never written, or cut short before its record, is just incomplete)."""
        try:
            record = json.loads(self.record.read_text())
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            record = None
        if not isinstance(record, dict) or not all(isinstance(record.get(kind), dict) for kind in self.kinds):
            _note(self.record, "cache record unreadable")
            return False
        mismatch = self._mismatch(record)
        if mismatch:
            _note(*mismatch)
        return mismatch is None

    def _mismatch(self, record: dict) -> tuple[Path, str] | None:
        """The first array that differs from ``record`` and how; every size is compared before any digest, and a
        digest is computed only for a file whose modification time changed."""
        for kind in self.kinds:
            path = self.path(kind)
            if not path.is_file():
                return path, "cache file missing"
            if path.stat().st_size != record[kind].get("size"):
                return path, "cache file truncated or extended since it was written"
        touched = [kind for kind in self.kinds if _fingerprint(self.path(kind)) != _fingerprint_of(record[kind])]
        for kind in touched:
            if file_sha256(self.path(kind)) != record[kind].get("sha256"):
                return self.path(kind), "cache file edited since it was written"
            record[kind] |= _fingerprint(self.path(kind))
        if touched:  # same content under a new time (a copied or restored cache): remember the new time
            self._write_record(record)
        return None


@dataclass(frozen=True)
class CachedVolume(CacheEntry):
    """A subject's images (C, x, y, z) and labels (x, y, z) in the compact layout (:mod:`.compact_layout`):
    ``<stem>_images.npy`` (z, C, x', y') codes, ``<stem>_palette.npy`` their values, ``<stem>_labels.npy`` (z, x', y'),
    cropped to the foreground; the record holds the crop."""

    kinds: ClassVar[tuple[str, ...]] = ("images", "palette", "labels")
    spacing: tuple[float, float, float]

    @property
    def images(self) -> Path:
        return self.path("images")

    @property
    def labels(self) -> Path:
        return self.path("labels")

    def intact(self) -> bool:
        """As :meth:`CacheEntry.intact`, and the record is of this layout (:data:`LAYOUT_VERSION`)."""
        if not super().intact():
            return False
        layout = json.loads(self.record.read_text()).get("layout")
        if not isinstance(layout, dict) or layout.get("version") != LAYOUT_VERSION:
            _note(self.record, f"cache record not of layout version {LAYOUT_VERSION}")
            return False
        shapes = [npy_header(self.path(kind))[0] for kind in ("images", "palette", "labels")]
        problem = stored_layout_problem(layout, *shapes)
        if problem:
            _note(self.record, problem)
        return not problem

    def save_volume(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Crop ``images`` (C, x, y, z) float32 and ``labels`` (x, y, z) uint8 to their foreground, encode and write them."""
        if (
            images.dtype != np.float32
            or labels.dtype != np.uint8
            or images.ndim != 4
            or images.shape[1:] != labels.shape
        ):
            raise ValueError(
                f"a cached volume takes float32 images (C, x, y, z), C >= 1, and uint8 labels (x, y, z) on their grid; "
                f"got {images.dtype} {images.shape} and {labels.dtype} {labels.shape}"
            )
        if not len(images):
            raise ValueError("a cached volume needs at least one image channel")
        crop, box = foreground_crop(images, labels)
        codes, palette = encode_images(images[(slice(None), *box)])
        layout = {"version": LAYOUT_VERSION, **crop.to_record(), "encoding": "palette" if palette.size else "float32"}
        self.save(layout, images=codes, palette=palette, labels=encode_labels(labels[box]))

    def volume(self, subject_id: str) -> Volume:
        """The cached arrays, memory-mapped, in the original geometry."""
        crop = Crop.from_record(json.loads(self.record.read_text())["layout"])
        images, image_file = map_npy(self.images)
        labels, label_file = map_npy(self.labels)
        return Volume(
            subject_id,
            StoredArray(images, crop, np.load(self.path("palette")), image_file),
            StoredArray(labels, crop, mapping=label_file),
            self.spacing,
        )
