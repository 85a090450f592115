"""The preprocessing cache: every voxel of a cached BraTS-size subject is read at least 5x faster than its
``.nii.gz`` files are decoded (medians, same run), and a segmentation job's peak memory does not grow with the dataset
(40 phantom subjects vs 10), in 2D (axial patches) and in 3D (cubes, sliding-window inference)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from ssl_medbench.datasets import DATASETS
from ssl_medbench.datasets.brats import CHANNELS, decode_subject, find_subject_files
from ssl_medbench.datasets.phantom_generators.brats import PhantomSpec, generate_brats_phantoms
from tests.benchmarks.ratios import paired_medians

ROOT = Path(__file__).resolve().parents[2]
#: 10x before the compact layout (issue 21): a whole subject now decodes its palette codes and moves its axial axis
#: back last (7.4-11.3x measured on 2 cores); whole subjects are read once per evaluation, patches all the time.
MIN_SPEEDUP = 5.0


def _prepared_brats(root: Path, workdir: Path):
    dataset = DATASETS.get("brats")(DATASETS.get("brats").Config(root=str(root)), workdir)
    dataset.prepare()
    return dataset


def test_cached_subject_loads_at_least_5x_faster_than_decoding_its_nifti_files(benchmark, tmp_path):
    """Every voxel of a cached 1-mm phantom subject read into memory, against the decode the cache replaces
    (nibabel reading the four images and the label map, checks, normalisation). Plain nibabel decoding of the
    four images alone is timed too and reported in extra_info."""
    root = generate_brats_phantoms(tmp_path / "brats", PhantomSpec(n_subjects=1, voxel_size_mm=1.0, seed=0))
    dataset = _prepared_brats(root, tmp_path / "run")
    subject = dataset.subject_ids()[0]
    files = find_subject_files(root / subject)
    shape = nib.load(files.files["t1"]).shape
    assert np.prod(shape) >= 0.75 * 240 * 240 * 155, f"phantom {shape} is smaller than a BraTS subject"

    def cached() -> tuple[np.ndarray, np.ndarray]:
        volume = dataset.load(subject)
        return np.array(volume.images), np.array(volume.labels)  # every voxel read from the memory-mapped cache

    images, labels = cached()
    decoded_images, decoded_labels = decode_subject(files)
    assert np.array_equal(images, decoded_images) and np.array_equal(labels, decoded_labels)
    benchmark.group = f"cached subject vs NIfTI decode, {shape}"
    ours, decoding = paired_medians(benchmark, cached, lambda: decode_subject(files), rounds=5)
    nibabel_only = statistics.median(
        _seconds(lambda: [np.asanyarray(nib.load(files.files[m]).dataobj, np.float32) for m in CHANNELS])
        for _ in range(3)
    )
    benchmark.extra_info.update(
        nibabel_four_images_median_s=nibabel_only, nibabel_four_images_ratio=nibabel_only / ours
    )
    assert decoding / ours >= MIN_SPEEDUP, (
        f"cache {ours * 1e3:.0f} ms vs decode {decoding * 1e3:.0f} ms: {decoding / ours:.1f}x"
    )


def _seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


#: The network and patches of the measured job per number of spatial dimensions, and the phantoms' voxel size (3D at
#: 4 mm with a narrower network and fewer steps: at 2 mm it took minutes more of CI for the same finding).
NETWORKS = {
    2: {"encoder": "chen_vgg", "channels": [16, 32, 64, 128], "steps": 10, "patch_size": 64, "batch_size": 16},
    3: {"encoder": "chen_vgg3d", "channels": [8, 16, 32, 64], "steps": 5, "patch_size": 32, "batch_size": 4},
}
VOXEL_SIZE_MM = {2: 2.0, 3: 4.0}


def _peak_memory_of_a_segmentation_job(root: Path, folder: Path, spatial_dims: int) -> tuple[int, int]:
    """Peak RssAnon of a segmentation job (the grid's one finetune cell, on the BraTS folder ``root``, run as a
    worker runs it, after a first run filled the cache), and the cache's size in bytes.

    The measured job runs with glibc's mmap threshold fixed at its default 128 KiB: glibc otherwise raises the
    threshold each time a large block is freed, so later large arrays come from the heap and what the heap keeps
    depends on allocation timing. Unfixed, one job's peak varied by 17-180 MiB between runs on the same data (and
    failed this test once in CI); fixed, by under 2 MiB, and the test measures what the job holds, not the allocator.
    """
    network = NETWORKS[spatial_dims]
    grid = {
        "name": "memory",
        "spatial_dims": spatial_dims,
        "seeds": [0],
        "fractions": [1.0],
        "initialisations": ["random"],
        "downstream_tasks": ["brats_segmentation"],
        "datasets": {"brats": {"type": "brats", "root": str(root), "test_fraction": 0.1}},
        "encoder": {"name": network["encoder"], "kwargs": {"channels": network["channels"]}},
        "finetune": {"epochs": 1, "steps_per_epoch": network["steps"], "batch_size": network["batch_size"]},
        "downstream": {"brats_segmentation": {"dataset": "brats", "patch_size": network["patch_size"]}},
    }
    folder.mkdir()
    (folder / "grid.yaml").write_text(yaml.safe_dump(grid))
    run = [
        "run",
        "--grid",
        str(folder / "grid.yaml"),
        "--out",
        str(folder / "out"),
        "--no-progress",
        "--cpus-per-job",
        "1",
    ]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    subprocess.run(
        [sys.executable, "-m", "benchmark", *run], cwd=ROOT, env=environment, check=True, capture_output=True
    )  # fills the cache
    (folder / "grid_seed1.yaml").write_text(yaml.safe_dump({**grid, "seeds": [1]}))
    measured = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.peak_memory", str(folder / "grid_seed1.yaml"), str(folder / "out")],
        cwd=ROOT,
        env=environment,
        check=True,
        capture_output=True,
        text=True,
    )
    cache_bytes = sum(path.stat().st_size for path in (folder / "out" / "cache").rglob("*.npy"))
    return int(measured.stdout.strip().splitlines()[-1]), cache_bytes


def _phantom_folders(folder: Path, voxel_size_mm: float) -> tuple[Path, Path]:
    """40 phantom subjects at ``voxel_size_mm``, and a folder of the first 10 of them."""
    spec = PhantomSpec(n_subjects=40, voxel_size_mm=voxel_size_mm, seed=0)
    everything = generate_brats_phantoms(folder / "brats40", spec)
    some = folder / "brats10"
    some.mkdir()
    for subject in sorted(p for p in everything.iterdir() if p.is_dir())[:10]:
        (some / subject.name).symlink_to(subject)
    return some, everything


@pytest.mark.slow
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_peak_memory_of_a_segmentation_job_is_bounded_by_the_cache_not_the_dataset_size(
    spatial_dims, tmp_path, record_property
):
    some, everything = _phantom_folders(tmp_path, VOXEL_SIZE_MM[spatial_dims])
    peak_10, bytes_10 = _peak_memory_of_a_segmentation_job(some, tmp_path / "run10", spatial_dims)
    peak_40, bytes_40 = _peak_memory_of_a_segmentation_job(everything, tmp_path / "run40", spatial_dims)
    assert bytes_40 > 3.5 * bytes_10
    growth = peak_40 - peak_10
    for name, value in {
        "peak_rss_anon_10": peak_10,
        "peak_rss_anon_40": peak_40,
        "cache_bytes_10": bytes_10,
        "cache_bytes_40": bytes_40,
    }.items():
        record_property(name, value)
    print(
        f"{spatial_dims}D: peak RssAnon {peak_10 / 2**20:.0f} MiB (10 subjects, {bytes_10 / 2**20:.0f} MiB cached) vs "
        f"{peak_40 / 2**20:.0f} MiB (40 subjects, {bytes_40 / 2**20:.0f} MiB cached)"
    )
    assert growth < 0.25 * (bytes_40 - bytes_10), (
        f"peak memory {peak_10 / 2**20:.0f} MiB with 10 subjects, {peak_40 / 2**20:.0f} MiB with 40: grew by {growth / 2**20:.0f} MiB "
        f"for {(bytes_40 - bytes_10) / 2**20:.0f} MiB more cached data"
    )
