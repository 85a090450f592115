"""The compact cache against the layout it replaced (full-size float32 (C, x, y, z) ``.npy`` arrays), on 1-mm BraTS
phantoms, and preparation with two workers against one. Ratios of medians measured in the same run:

* bytes per subject: at most 30 % of the full-size layout;
* patch sampling (a training job's 64x64 axial patches) from files evicted from the page cache: at least 5x as fast;
  from the page cache: at least 1.5x (measured 1.9-2.05x; 3x was aimed at);
* preparing 8 phantom subjects (generate, decode, cache) with 2 workers: at most 0.65x the time with 1, same bytes.
"""

from __future__ import annotations

import gc
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_medbench.core.parallel import set_preparation_workers
from ssl_medbench.datasets import DATASETS
from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.brats import decode_subject, find_subject_files
from ssl_medbench.datasets.cached import CachedVolume
from ssl_medbench.datasets.patches import PatchSampler
from ssl_medbench.datasets.phantom_generators.brats import PhantomSpec
from tests.benchmarks.ratios import paired_medians

SUBJECTS = 4
PATCH = 64
MAX_BYTES_RATIO = 0.30
MIN_COLD_SPEEDUP = 5.0
#: 3x was aimed at; measured 1.9-2.05x (README, 'Data at real scale': memory reads, decoding and the prefetch)
MIN_WARM_SPEEDUP = 1.5
MAX_TWO_WORKER_RATIO = 0.65


class Layouts:
    """The same subjects in both layouts, each side a list of (volume loader, its files)."""

    def __init__(self, folder: Path):
        set_preparation_workers(2)
        try:
            root = PhantomSpec(n_subjects=SUBJECTS, voxel_size_mm=1.0, seed=0).generate(folder / "brats")
        finally:
            set_preparation_workers(1)
        self.compact: list[CachedVolume] = []
        self.full: list[tuple[Path, Path]] = []
        for subject in sorted(path for path in root.iterdir() if path.is_dir()):
            images, labels = decode_subject(find_subject_files(subject))
            entry = CachedVolume(folder / "compact" / subject.name, (1.0, 1.0, 1.0))
            entry.save_volume(images, labels)
            self.compact.append(entry)
            paths = (folder / "full" / f"{subject.name}_images.npy", folder / "full" / f"{subject.name}_labels.npy")
            paths[0].parent.mkdir(exist_ok=True)
            np.save(paths[0], images)
            np.save(paths[1], labels)
            self.full.append(paths)

    def files(self, side: str) -> list[Path]:
        if side == "compact":
            return [entry.path(kind) for entry in self.compact for kind in entry.kinds]
        return [path for pair in self.full for path in pair]

    def volumes(self, side: str) -> list[Volume]:
        """Freshly memory-mapped volumes (nothing of them mapped into this process yet)."""
        if side == "compact":
            return [entry.volume(entry.stem.name) for entry in self.compact]
        return [
            Volume(images.name, np.load(images, mmap_mode="r"), np.load(labels, mmap_mode="r"), (1.0, 1.0, 1.0))
            for images, labels in self.full
        ]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> Layouts:
    return Layouts(tmp_path_factory.mktemp("layouts"))


def _bytes(paths: list[Path]) -> int:
    return sum(path.stat().st_size for path in paths)


def test_a_compact_subject_takes_at_most_30_percent_of_the_full_size_layout(benchmark, layouts):
    compact, full = _bytes(layouts.files("compact")), _bytes(layouts.files("full"))
    benchmark.group = "cache bytes per 1-mm BraTS phantom subject"
    entry = layouts.compact[0]
    images, labels = (np.load(path) for path in layouts.full[0])
    ours, reference = paired_medians(
        benchmark, lambda: entry.save_volume(images, labels), lambda: _save_full(layouts.full[0], images, labels), 3
    )
    benchmark.extra_info.update(
        compact_bytes_per_subject=compact / SUBJECTS,
        full_bytes_per_subject=full / SUBJECTS,
        bytes_ratio=compact / full,
        projected_brats2021_gb=compact / SUBJECTS * 1251 / 1e9,
    )
    assert compact / full <= MAX_BYTES_RATIO, f"compact {compact / full:.1%} of the full-size layout"


def _save_full(paths: tuple[Path, Path], images: np.ndarray, labels: np.ndarray) -> None:
    np.save(paths[0], images)
    np.save(paths[1], labels)


class Reads:
    """The patch reads of one sampler per layout: a round draws its batches' volumes and centres first (the random
    numbers cost the same in both layouts, so they are left out of the time), then reads them; a cold round evicts the
    files from the page cache before."""

    def __init__(self, layouts: Layouts, side: str, batches: int, cold: bool):
        self.layouts, self.side, self.batches, self.cold = layouts, side, batches, cold
        self.sampler = PatchSampler(layouts.volumes(side), PATCH, foreground_fraction=0.5)
        self.generator = torch.Generator().manual_seed(0)
        self.picks: list = []

    def setup(self) -> None:
        self.picks = [self.sampler.draw(64, self.generator) for _ in range(self.batches)]
        if self.cold:
            self._evict()

    def read(self) -> None:
        for picks in self.picks:
            self.sampler.read(picks)

    def _evict(self) -> None:
        """Unmap the sampler's volumes (the kernel keeps pages that are mapped), drop the files' pages, map afresh."""
        for indexed in self.sampler.volumes:
            indexed.volume = None
        gc.collect()
        for path in self.layouts.files(self.side):
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.fsync(descriptor)
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(descriptor)
        for indexed, volume in zip(self.sampler.volumes, self.layouts.volumes(self.side)):
            indexed.volume = volume


def _compare_reads(benchmark, layouts: Layouts, batches: int, cold: bool) -> float:
    ours, reference = Reads(layouts, "compact", batches, cold), Reads(layouts, "full", batches, cold)
    compact, full = paired_medians(benchmark, ours.read, reference.read, 5, ours.setup, reference.setup)
    benchmark.extra_info.update(compact_patches_per_s=64 * batches / compact, full_patches_per_s=64 * batches / full)
    return full / compact


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="evicting a file from the page cache needs posix_fadvise")
def test_patches_from_evicted_files_come_at_least_5x_faster_from_the_compact_layout(benchmark, layouts):
    benchmark.group = f"64 patches of {PATCH}x{PATCH} from files evicted from the page cache, {SUBJECTS} subjects"
    speedup = _compare_reads(benchmark, layouts, batches=1, cold=True)
    assert speedup >= MIN_COLD_SPEEDUP, f"compact layout {speedup:.1f}x as fast"


def test_patches_from_the_page_cache_come_at_least_1_5x_faster_from_the_compact_layout(benchmark, layouts):
    benchmark.group = f"20 x 64 patches of {PATCH}x{PATCH} from the page cache, {SUBJECTS} subjects"
    speedup = _compare_reads(benchmark, layouts, batches=20, cold=False)
    assert speedup >= MIN_WARM_SPEEDUP, f"compact layout {speedup:.1f}x as fast"


def _prepare_phantoms(folder: Path, workers: int) -> dict[str, str]:
    """Generate, decode and cache 8 phantom subjects in a fresh ``folder``; the cached arrays' digests."""
    set_preparation_workers(workers)
    try:
        phantom = DATASETS.get("brats_phantom")
        phantom(phantom.Config(n_subjects=8, voxel_size_mm=1.5), folder).prepare()
    finally:
        set_preparation_workers(1)
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in (folder / "cache").rglob("*.npy")}


def test_preparing_8_subjects_with_2_workers_takes_at_most_0_65x_the_time_of_1(benchmark, tmp_path):
    rounds = iter(range(100))
    digests: dict[int, list[dict[str, str]]] = {1: [], 2: []}

    def prepare(workers: int) -> None:
        digests[workers].append(_prepare_phantoms(tmp_path / f"round{next(rounds)}", workers))

    benchmark.group = "preparing 8 BraTS phantoms at 1.5 mm: 2 workers vs 1"
    two, one = paired_medians(benchmark, lambda: prepare(2), lambda: prepare(1), rounds=3)
    assert all(found == digests[1][0] for found in digests[1] + digests[2]) and len(digests[1][0]) == 8 * 3
    assert two / one <= MAX_TWO_WORKER_RATIO, f"2 workers {two:.1f} s vs 1 worker {one:.1f} s: {two / one:.2f}x"
