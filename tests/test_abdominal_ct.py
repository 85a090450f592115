"""MSD and BTCV loaders on folders written in the real layouts, the CT phantom's anatomy, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ssl_medbench.core.errors import DataError
from ssl_medbench.datasets.abdominal_ct import BTCV_LABELS, BTCVFolder, MSDFolder
from ssl_medbench.datasets.phantom_generators.abdominal_ct import (
    ORGAN_LAYOUT,
    CTPhantomSpec,
    generate_ct_phantoms,
    make_subject,
)
from ssl_medbench.downstream.boxes import box_from_mask, centroid_distance_mm

SPACING = (0.8, 0.8, 2.5)


def _case(seed: int, shape=(12, 10, 8)) -> tuple[np.ndarray, np.ndarray]:
    """HU volume and BTCV labels: spleen, left kidney and liver cubes at known places, plus an unused gallbladder."""
    hu = np.full(shape, -1000, np.int16)
    hu[1:11, 1:9, :] = 40
    hu[0, 0, 0] = -1000 - seed  # each patient's scan differs: identical images are refused as duplicates
    labels = np.zeros(shape, np.uint8)
    labels[1:3, 2:4, 1:3] = BTCV_LABELS["spleen"]
    labels[8:10, 2:5, 2:6] = BTCV_LABELS["left_kidney"]
    labels[4:7, 5:8, 3 + seed % 2 : 7] = BTCV_LABELS["liver"]
    labels[5, 1, 1] = BTCV_LABELS["gallbladder"]
    return hu, labels


def _save(array: np.ndarray, path: Path, affine: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*SPACING, 1.0]) if affine is None else affine), path)


def write_msd(root: Path, cases: int = 4) -> Path:
    training = []
    for index in range(cases):
        hu, labels = _case(index)
        _save(hu, root / "imagesTr" / f"abd_{index:03d}.nii.gz")
        _save(labels, root / "labelsTr" / f"abd_{index:03d}.nii.gz")
        training.append({"image": f"./imagesTr/abd_{index:03d}.nii.gz", "label": f"./labelsTr/abd_{index:03d}.nii.gz"})
    (root / "imagesTr" / "._abd_000.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    training.append({"image": "./imagesTr/._abd_000.nii.gz", "label": "./labelsTr/._abd_000.nii.gz"})
    labels = {"0": "background", "1": "spleen", "3": "Kidney Left", "6": "liver", "4": "gallbladder"}
    (root / "dataset.json").write_text(json.dumps({"name": "Test", "labels": labels, "training": training, "test": []}))
    return root


def write_btcv(root: Path, cases: int = 4) -> Path:
    for index in range(1, cases + 1):
        hu, labels = _case(index)
        _save(hu, root / "img" / f"img{index:04d}.nii.gz")
        _save(labels, root / "label" / f"label{index:04d}.nii.gz")
    return root


ORGANS = ("spleen", "left_kidney", "liver")


def _msd(root: Path, tmp_path: Path, **config) -> MSDFolder:
    dataset = MSDFolder(
        MSDFolder.Config(root=str(root), test_fraction=0.25, **({"organs": ORGANS} | config)), tmp_path / "work"
    )
    dataset.prepare()
    return dataset


def test_msd_layout_loads_windowed_ct_with_canonical_organ_labels(tmp_path):
    dataset = _msd(write_msd(tmp_path / "Task99_Abdomen"), tmp_path)
    assert dataset.subject_ids() == ["abd_000", "abd_001", "abd_002", "abd_003"]  # the ._ entry is skipped
    assert dataset.class_names == ORGANS
    volume = dataset.load("abd_001")
    _, stored = _case(1)
    assert volume.spacing == SPACING and volume.images.shape == (1, 12, 10, 8)
    labels = np.asarray(volume.labels)
    assert (
        np.array_equal(labels == 1, stored == 1)
        and np.array_equal(labels == 2, stored == 3)
        and np.array_equal(labels == 3, stored == 6)
    )
    assert labels.max() == 3  # the gallbladder is not among the organs
    images = np.asarray(volume.images)
    assert images[0, 0, 0, 0] == 0.0  # air is below the window
    assert images[0, 5, 5, 4] == pytest.approx((40 + 160) / 400)  # soft tissue in the [-160, 240] HU window


def test_btcv_layout_uses_its_fixed_label_ids(tmp_path):
    dataset = BTCVFolder(BTCVFolder.Config(root=str(write_btcv(tmp_path / "btcv")), organs=ORGANS), tmp_path / "work")
    dataset.prepare()
    assert dataset.subject_ids() == ["img0001", "img0002", "img0003", "img0004"]
    labels = np.asarray(dataset.load("img0002").labels)
    assert np.array_equal(labels == 3, _case(2)[1] == BTCV_LABELS["liver"])


def test_label_ids_override_the_layout(tmp_path):
    dataset = _msd(write_msd(tmp_path / "Task99_Abdomen"), tmp_path, label_ids={"left_kidney": 6, "liver": 3})
    labels = np.asarray(dataset.load("abd_000").labels)
    assert np.array_equal(labels == 2, _case(0)[1] == 6)


def _shift_label_affine(root: Path) -> None:
    _save(
        _case(2)[1],
        root / "labelsTr" / "abd_002.nii.gz",
        affine=np.diag([*SPACING, 1.0]) + np.eye(4) * 0 + np.array([[0, 0, 0, 5.0]] * 3 + [[0, 0, 0, 0]]),
    )


@pytest.mark.parametrize(
    "breakage, config, message",
    [
        (
            lambda root: (root / "imagesTr" / "abd_001.nii.gz").unlink(),
            {},
            r"imagesTr/abd_001.nii.gz: listed in .*dataset.json \(training entry 1\) but missing",
        ),
        (lambda root: (root / "dataset.json").unlink(), {}, "dataset.json: not found"),
        (lambda root: (root / "dataset.json").write_text("{not json"), {}, "dataset.json: not valid JSON"),
        (
            lambda root: _save(np.zeros((12, 10, 9), np.uint8), root / "labelsTr" / "abd_002.nii.gz"),
            {},
            r"labelsTr/abd_002.nii.gz: shape \(12, 10, 9\) differs",
        ),
        (_shift_label_affine, {}, "labelsTr/abd_002.nii.gz: affine differs"),
        (lambda root: None, {"organs": ("spleen", "pancreas")}, r"no label id for organ\(s\) pancreas"),
        (
            lambda root: None,
            {"organs": ("spleen", "stomach"), "label_ids": {"stomach": 9}},
            r"organ\(s\) stomach absent from every training subject",
        ),
    ],
)
def test_bad_msd_input_is_one_error_naming_the_file(breakage, config, message, tmp_path):
    root = write_msd(tmp_path / "Task99_Abdomen")
    breakage(root)
    with pytest.raises(DataError, match=message):
        _msd(root, tmp_path, **config)


def test_btcv_image_without_label_is_named(tmp_path):
    root = write_btcv(tmp_path / "btcv")
    (root / "label" / "label0003.nii.gz").unlink()
    with pytest.raises(DataError, match="img0003.nii.gz: no label file"):
        BTCVFolder(BTCVFolder.Config(root=str(root), organs=ORGANS), tmp_path).prepare()


def _centroid(labels: np.ndarray, label: int, spacing: np.ndarray) -> np.ndarray:
    return np.argwhere(labels == label).mean(axis=0) * spacing


@pytest.mark.parametrize("index", range(3))
def test_phantom_organs_lie_where_anatomy_puts_them(index):
    """RAS+: +x is the patient's right, +y anterior, +z superior."""
    spec = CTPhantomSpec(spacing_xy_mm=8.0, spacing_z_mm=10.0)
    hu, labels = make_subject(spec, index)
    spacing = np.array([8.0, 8.0, 10.0])
    centre = {name: _centroid(labels, label, spacing) for name, label in BTCV_LABELS.items() if (labels == label).any()}
    assert set(centre) == {"spleen", "right_kidney", "left_kidney", "liver", "pancreas"}
    middle = (np.array(labels.shape) - 1) * spacing / 2
    assert centre["liver"][0] > middle[0] > centre["spleen"][0]  # liver right, spleen left
    assert centre["spleen"][1] < centre["liver"][1]  # spleen posterior to the liver
    assert centre["right_kidney"][2] < centre["left_kidney"][2]  # right kidney lower
    assert centre["right_kidney"][0] > middle[0] > centre["left_kidney"][0]
    pancreas_x = np.argwhere(labels == BTCV_LABELS["pancreas"])[:, 0] * spacing[0]
    assert pancreas_x.min() < middle[0] < pancreas_x.max()  # across the midline
    liver, kidney = (np.median(hu[labels == BTCV_LABELS[organ]]) for organ in ("liver", "right_kidney"))
    assert 80 < liver < 140 and kidney > liver  # portal-venous phase: enhancing kidney brighter than liver
    assert hu.min() < -900  # air around the body


def test_phantom_cohort_varies_so_that_no_fixed_box_fits():
    """Placement in the scanner, habitus, breathing and organ size vary as in a real cohort: the mean box of ten
    subjects (the image-blind reference) misses the other subjects' organs by centimetres, though every organ is in
    every image."""
    spec = CTPhantomSpec(spacing_xy_mm=8.0, spacing_z_mm=10.0)
    spacing = (8.0, 8.0, 10.0)
    labels = [make_subject(spec, index)[1] for index in range(16)]
    errors = {}
    for organ in ORGAN_LAYOUT:
        boxes = [box_from_mask(subject == BTCV_LABELS[organ]) for subject in labels]
        assert all(box is not None for box in boxes), organ
        mean_box = np.mean(boxes[:10], axis=0)
        errors[organ] = np.mean([centroid_distance_mm(mean_box, box, spacing) for box in boxes[10:]])
    assert np.mean(list(errors.values())) > 18.0, errors
    assert min(errors.values()) > 10.0, errors


def test_phantoms_vary_between_subjects_and_are_written_in_the_msd_layout(tmp_path):
    spec = CTPhantomSpec(n_subjects=3, spacing_xy_mm=10.0, spacing_z_mm=12.0)
    root = generate_ct_phantoms(tmp_path / "ct", spec)
    description = json.loads((root / "dataset.json").read_text())
    assert description["numTraining"] == 3 and description["training"][0]["image"].startswith("./imagesTr/")
    assert description["labels"]["11"] == "pancreas" and description["labels"]["2"] == "right_kidney"
    image = nib.load(root / description["training"][0]["image"])
    assert image.header.get_zooms() == (10.0, 10.0, 12.0) and image.get_data_dtype() == np.int16
    first, second = (make_subject(spec, index)[1] for index in (0, 1))
    assert not np.array_equal(first, second)


def test_a_finished_phantom_folder_is_reused_though_its_spec_holds_a_tuple(tmp_path):
    """The field of view is a tuple, recorded in phantom.json as a JSON list: the same settings, so no rewrite."""
    spec = CTPhantomSpec(n_subjects=2, spacing_xy_mm=20.0, spacing_z_mm=20.0)
    root = generate_ct_phantoms(tmp_path / "ct", spec)
    stamp = (root / "phantom.json").stat().st_mtime_ns
    assert generate_ct_phantoms(root, spec) == root
    assert (root / "phantom.json").stat().st_mtime_ns == stamp


def _relabel(root: Path, value, dtype) -> None:
    labels = _case(2)[1].astype(dtype)
    labels[0, 0, 0] = value
    _save(labels, root / "labelsTr" / "abd_002.nii.gz")


def _list_again(root: Path, image: str, label: str) -> None:
    description = json.loads((root / "dataset.json").read_text())
    description["training"].append({"image": image, "label": label})
    (root / "dataset.json").write_text(json.dumps(description))


def _new_case(image: str, label: str):
    """A breakage adding a case whose image is new (a scan of its own) and ``label`` as its label file."""

    def add(root: Path) -> None:
        _save(_case(9)[0], root / image)
        _list_again(root, image, label)

    return add


def _copy_case(root: Path) -> None:
    for folder in ("imagesTr", "labelsTr"):
        (root / folder / "abd_009.nii.gz").write_bytes((root / folder / "abd_001.nii.gz").read_bytes())
    _list_again(root, "./imagesTr/abd_009.nii.gz", "./labelsTr/abd_009.nii.gz")


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda root: _relabel(root, 2.5, np.float32), r"abd_002.nii.gz: label values \[2.5\] outside the label ids"),
        (lambda root: _relabel(root, np.nan, np.float32), r"abd_002.nii.gz: label values \[nan\] outside"),
        (
            lambda root: _relabel(root, 65542, np.int32),
            r"abd_002.nii.gz: label values \[65542\] outside the label ids of the layout \(and label_ids\) \[0, 1, 3, 4, 6\]",
        ),
        (
            lambda root: _list_again(root, "./imagesTr/abd_001.nii.gz", "./labelsTr/abd_001.nii.gz"),
            r"subject 'abd_001' appears twice",
        ),
        (_new_case("./imagesTr/extra/abd_001.nii.gz", "./labelsTr/abd_003.nii.gz"), r"subject 'abd_001' appears twice"),
        (
            _new_case("./imagesTr/abd_009.nii.gz", "./labelsTr/abd_001.nii.gz"),
            r"subjects 'abd_001' and 'abd_009' are duplicates: .*labelsTr/abd_001.nii.gz lead to the same file",
        ),
        (_copy_case, r"subjects 'abd_001' and 'abd_009' are duplicates: .*abd_001.nii.gz and .*abd_009.nii.gz have"),
    ],
    ids=["fraction", "NaN", "65542 (6 as int16)", "listed twice", "one id twice", "shared label", "copied case"],
)
def test_msd_labels_and_duplicates_are_checked(breakage, message, tmp_path):
    root = write_msd(tmp_path / "Task99_Abdomen")
    breakage(root)
    with pytest.raises(DataError, match=message):
        _msd(root, tmp_path)
