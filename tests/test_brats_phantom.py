"""The default data: BraTS 2021 layout, labels, spacing, MR contrast ordering, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ssl_medbench.datasets.phantom_generators.brats import PhantomSpec, generate_brats_phantoms, make_subject
from ssl_medbench.datasets.phantom_generators.mni_template import load_tissue_maps
from tests.conftest import TINY_PHANTOM


def test_writes_the_brats_2021_layout(tiny_phantom_root: Path):
    subjects = sorted(p.name for p in tiny_phantom_root.iterdir() if p.is_dir())
    assert subjects == [f"BraTS2021_{i:05d}" for i in range(TINY_PHANTOM.n_subjects)]
    for subject in subjects:
        files = sorted(p.name for p in (tiny_phantom_root / subject).iterdir())
        assert files == sorted(f"{subject}_{m}.nii.gz" for m in ("t1", "t1ce", "t2", "flair", "seg"))
    seg = nib.load(tiny_phantom_root / subjects[0] / f"{subjects[0]}_seg.nii.gz")
    assert seg.header.get_zooms()[:3] == (4.0, 4.0, 4.0)
    assert set(np.unique(np.asarray(seg.dataobj)).tolist()) == {0, 1, 2, 4}
    assert json.loads((tiny_phantom_root / "phantom.json").read_text())["n_subjects"] == TINY_PHANTOM.n_subjects


@pytest.fixture(scope="module")
def subject():
    """An unwarped subject (deformation 0), so the template's tissue maps describe its voxels."""
    template = load_tissue_maps(3.0)
    return template, *make_subject(template, PhantomSpec(voxel_size_mm=3.0, seed=5, deformation_mm=0.0), index=1)


def test_mr_contrast_ordering_and_tumour_appearance(subject):
    template, images, labels = subject
    healthy = labels == 0
    tissue = {name: healthy & (template[name] > 0.9) for name in ("wm", "gm", "csf")}
    mean = {m: {t: images[m][mask].mean() for t, mask in tissue.items()} for m in images}
    assert mean["t1"]["wm"] > mean["t1"]["gm"] > mean["t1"]["csf"]
    assert mean["t2"]["csf"] > mean["t2"]["gm"] > mean["t2"]["wm"]
    assert mean["flair"]["csf"] < mean["flair"]["wm"]
    enhancing, edema = labels == 4, labels == 2
    assert images["t1ce"][enhancing].mean() > 1.3 * images["t1ce"][tissue["wm"]].mean()
    assert images["t1ce"][enhancing].mean() > 1.3 * images["t1"][enhancing].mean()
    assert images["flair"][edema].mean() > images["flair"][tissue["wm"]].mean()
    assert images["t2"][edema].mean() > images["t2"][tissue["wm"]].mean()


def test_tumour_is_nested_core_in_rim_in_edema(subject):
    _, _, labels = subject
    from scipy import ndimage

    core, rim = labels == 1, labels == 4
    assert core.any() and rim.any() and (labels == 2).any()
    # the core's neighbourhood holds no edema-free background: it is wrapped in the enhancing rim
    around_core = ndimage.binary_dilation(core, iterations=1) & ~core
    assert np.isin(labels[around_core], (1, 4)).mean() > 0.95


def test_skull_stripped_zero_outside_the_brain_positive_inside(subject):
    template, images, _ = subject
    brain = (template["gm"] + template["wm"] + template["csf"]) > 0.5
    for image in images.values():
        assert np.all(image[~brain] == 0)
        assert np.all(image[brain] > 0)


def test_deterministic_from_the_seed_and_different_between_subjects(tmp_path: Path):
    spec = PhantomSpec(n_subjects=2, voxel_size_mm=6.0, seed=3)
    first = generate_brats_phantoms(tmp_path / "a", spec)
    second = generate_brats_phantoms(tmp_path / "b", spec)
    read = lambda root, s, m: np.asarray(nib.load(root / s / f"{s}_{m}.nii.gz").dataobj)  # noqa: E731
    for modality in ("t1", "seg"):
        assert np.array_equal(read(first, "BraTS2021_00000", modality), read(second, "BraTS2021_00000", modality))
    assert not np.array_equal(read(first, "BraTS2021_00000", "seg"), read(first, "BraTS2021_00001", "seg"))
    assert not list(tmp_path.glob("*.partial-*"))


def test_regenerates_when_the_spec_changes(tmp_path: Path):
    root = generate_brats_phantoms(tmp_path / "p", PhantomSpec(n_subjects=2, voxel_size_mm=6.0))
    stamp = (root / "phantom.json").stat().st_mtime_ns
    assert generate_brats_phantoms(root, PhantomSpec(n_subjects=2, voxel_size_mm=6.0)) == root
    assert (root / "phantom.json").stat().st_mtime_ns == stamp
    generate_brats_phantoms(root, PhantomSpec(n_subjects=3, voxel_size_mm=6.0))
    assert len([p for p in root.iterdir() if p.is_dir()]) == 3
