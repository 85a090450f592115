"""The default data: BraTS 2021 layout, labels, spacing, MR contrast ordering, cohort variation, determinism."""

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
    values = set()
    for subject in subjects:
        values |= set(np.unique(np.asarray(nib.load(tiny_phantom_root / subject / f"{subject}_seg.nii.gz").dataobj)))
    assert values == {0, 1, 2, 4}
    assert json.loads((tiny_phantom_root / "phantom.json").read_text())["n_subjects"] == TINY_PHANTOM.n_subjects


@pytest.fixture(scope="module")
def subjects():
    """Four unwarped subjects (deformation 0), so the template's tissue maps describe their voxels."""
    template = load_tissue_maps(3.0)
    spec = PhantomSpec(voxel_size_mm=3.0, seed=5, deformation_mm=0.0)
    return template, [make_subject(template, spec, index) for index in range(4)]


def test_mr_contrast_ordering_and_tumour_appearance(subjects):
    """Within each contrast (scanner gains differ between contrasts and subjects, so only ratios compare)."""
    template, cohort = subjects
    enhancement = []
    for images, labels in cohort:
        healthy = labels == 0
        tissue = {name: healthy & (template[name] > 0.9) for name in ("wm", "gm", "csf")}
        mean = {m: {t: images[m][mask].mean() for t, mask in tissue.items()} for m in images}
        assert mean["t1"]["wm"] > mean["t1"]["gm"] > mean["t1"]["csf"]
        assert mean["t2"]["csf"] > mean["t2"]["gm"] > mean["t2"]["wm"]
        assert mean["flair"]["csf"] < mean["flair"]["wm"]
        edema = labels == 2
        assert images["flair"][edema].mean() > 1.2 * mean["flair"]["wm"]
        assert images["t2"][edema].mean() > 1.2 * mean["t2"]["wm"]
        enhancing = labels == 4
        if enhancing.any():
            t1ce, t1 = (images[m][enhancing].mean() / mean[m]["wm"] for m in ("t1ce", "t1"))
            assert t1ce > 1.4 * t1  # bright after contrast, and only after contrast
            enhancement.append(t1ce)
    assert len(enhancement) >= 3 and np.mean(enhancement) > 1.15


def test_tumour_is_nested_core_in_rim_in_edema(subjects):
    from scipy import ndimage

    template, cohort = subjects
    brain = (template["gm"] + template["wm"] + template["csf"]) > 0.5
    for _, labels in cohort:
        assert (labels == 2).any() and ((labels == 1) | (labels == 4)).any()
        cores, count = ndimage.label(np.isin(labels, (1, 4)))
        for number in range(1, count + 1):
            core = cores == number
            if not (labels[core] == 4).any():  # a non-enhancing tumour: its core is label 1 only
                continue
            necrosis = core & (labels == 1)
            if not necrosis.any():  # an enhancing tumour without necrosis
                continue
            # inside the brain, the necrotic core's neighbourhood is the enhancing rim: no edema, no healthy tissue
            around = ndimage.binary_dilation(necrosis, iterations=1) & ~necrosis & brain
            assert np.isin(labels[around], (1, 4)).mean() > 0.9


def test_skull_stripped_zero_outside_the_brain_positive_inside(subjects):
    template, cohort = subjects
    brain = (template["gm"] + template["wm"] + template["csf"]) > 0.5
    for images, _ in cohort:
        for image in images.values():
            assert np.all(image[~brain] == 0)
            assert np.all(image[brain] > 0)


@pytest.fixture(scope="module")
def cohort():
    """Sixteen subjects at 4 mm with the default anatomical variation."""
    template = load_tissue_maps(4.0)
    spec = PhantomSpec(voxel_size_mm=4.0, seed=0)
    return [make_subject(template, spec, index) for index in range(16)]


def test_tumours_vary_in_place_size_number_and_enhancement(cohort):
    """Real cohorts: either hemisphere, sizes over an order of magnitude, multifocal and non-enhancing tumours."""
    from scipy import ndimage

    labels = [subject[1] for subject in cohort]
    whole = [np.isin(label, (1, 2, 4)) for label in labels]
    sides = {np.sign(np.argwhere(mask)[:, 0].mean() - (mask.shape[0] - 1) / 2) for mask in whole}
    assert sides == {-1.0, 1.0}
    volumes = [mask.sum() for mask in whole]
    assert max(volumes) > 5 * min(volumes)
    assert max(ndimage.label(mask)[1] for mask in whole) > 1  # a multifocal tumour
    assert any(not (label == 4).any() for label in labels)  # a tumour without enhancement
    # an image-blind voxel-wise majority vote over the cohort predicts no tumour anywhere
    assert np.mean(whole, axis=0).max() < 0.5


def test_scanner_and_anatomy_vary_between_subjects(cohort):
    """Tumour contrast against white matter, and the brain's extent, differ from subject to subject."""
    contrast, extent = [], []
    for images, labels in cohort:
        brain = images["t1"] > 0
        white = brain & (labels == 0) & (images["t1"] > np.percentile(images["t1"][brain], 75))
        contrast.append(images["flair"][labels == 2].mean() / images["flair"][white].mean())
        extent.append(np.ptp(np.argwhere(brain), axis=0))
    assert np.ptp(contrast) > 0.15
    assert (np.ptp(extent, axis=0) >= 1).all()  # head size differs along every axis


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
