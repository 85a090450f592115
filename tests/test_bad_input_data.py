"""Hostile data through the command line (issue 20: ownership, strict data reading): every case ends the command in
one clear line naming the culprit, exit code 2, nothing recorded, and the user's files exactly as they were."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from benchmark.cli import main
from tests.brats_files import write_subject
from tests.conftest import tiny_grid
from tests.test_bad_input_catalogue import DATA_TASK, _fetal, _msd, _save
from tests.test_fetal_planes import CSV_NAME, ROWS

pytestmark = pytest.mark.slow
TASK = DATA_TASK | {"brats_phantom": "brats_segmentation"}


def _brats(tmp_path: Path, damage: Callable[[Path], None]) -> dict:
    """Three BraTS subjects S0-S2 under ``tmp_path / "brats"``, then ``damage(root)``."""
    root = tmp_path / "brats"
    for index in range(3):
        write_subject(root, f"S{index}", seed=index)
    damage(root)
    return {"data": {"type": "brats", "root": str(root), "test_fraction": 0.34}}


def _foreign_phantom_root(tmp_path: Path) -> dict:
    """A phantom dataset whose ``root`` is a folder of real data: a BraTS subject and the user's notes."""
    root = tmp_path / "my_brats"
    write_subject(root, "BraTS2021_00000")
    (root / "notes.txt").write_text("acquisition notes")
    return {"data": {"type": "brats_phantom", "root": str(root)}}


def _seg(values: list[float], dtype: type) -> Callable[[Path], None]:
    """A damage writing S1's segmentation as ``dtype`` with ``values`` in its first voxels."""

    def damage(root: Path) -> None:
        path = root / "S1" / "S1_seg.nii.gz"
        seg = np.asarray(nib.load(path).dataobj).astype(dtype)
        seg.flat[: len(values)] = values
        _save(seg, path)

    return damage


def _second_seg(root: Path) -> None:
    _save(np.zeros((12, 10, 8), np.uint8), root / "S1" / "S1_unet_seg.nii.gz")


def _other_subjects_file(root: Path) -> None:
    (root / "S1" / "S1_t2.nii.gz").unlink()
    shutil.copy(root / "S0" / "S0_t2.nii.gz", root / "S1" / "S0_t2.nii.gz")


def _twin(root: Path, make: Callable[[Path, Path], object]) -> None:
    """Subject S3 made from S0's files by ``make(source, target)``, each renamed S3_*."""
    (root / "S3").mkdir()
    for path in (root / "S0").iterdir():
        make(path, root / "S3" / path.name.replace("S0", "S3"))


def _msd_label(root: Path) -> None:
    image = nib.load(root / "labelsTr" / "abd_002.nii.gz")
    labels = np.asarray(image.dataobj).copy()
    labels[0, 0, 0] = 9
    _save(labels, root / "labelsTr" / "abd_002.nii.gz", image.affine)


def _msd_listed_twice(root: Path) -> None:
    description = json.loads((root / "dataset.json").read_text())
    description["training"].append(description["training"][1])
    (root / "dataset.json").write_text(json.dumps(description))


def _image_of_two_patients(root: Path) -> None:
    row = f"{ROWS[0][0]};1300;Fetal brain;Other;Op. 1;Voluson E6;0"
    (root / CSV_NAME).write_text((root / CSV_NAME).read_text() + row + "\n")


#: case -> (how to break the data, the message documented in docs/bad_input.md)
CATALOGUE: dict[str, tuple[Callable, str]] = {
    "phantom root holding other files": (
        lambda g, t: _foreign_phantom_root(t),
        "exists and was not written by ssl-medbench (no phantom.json); choose an empty or new folder for dataset "
        "'brats_phantom'",
    ),
    "fractional labels": (
        lambda g, t: _brats(t, _seg([1.4, 2.6], np.float64)),
        "S1_seg.nii.gz: label values [1.4, 2.6] outside the BraTS convention [0, 1, 2, 4]",
    ),
    "NaN labels": (
        lambda g, t: _brats(t, _seg([np.nan], np.float32)),
        "S1_seg.nii.gz: label values [nan] outside the BraTS convention",
    ),
    "label beyond int16": (
        lambda g, t: _brats(t, _seg([65538], np.int32)),
        "S1_seg.nii.gz: label values [65538] outside the BraTS convention",
    ),
    "folder without NIfTI among subjects": (
        lambda g, t: _brats(
            t, lambda r: (r / "derivatives").mkdir() or (r / "derivatives" / "notes.txt").write_text("x")
        ),
        "folder(s) derivatives hold no NIfTI file, so are not BraTS subjects",
    ),
    "two files for one modality": (
        lambda g, t: _brats(t, _second_seg),
        "S1: 2 files for seg (S1_seg.nii.gz, S1_unet_seg.nii.gz); expected exactly one",
    ),
    "another subject's file": (
        lambda g, t: _brats(t, _other_subjects_file),
        "S1: S0_t2.nii.gz not named after the subject folder (expected S1_<modality>.nii.gz)",
    ),
    "symlinked subject folder": (
        lambda g, t: _brats(t, lambda r: (r / "S3").symlink_to(r / "S0")),
        "subjects 'S0' and 'S3' are duplicates",
    ),
    "symlinked subject files": (
        lambda g, t: _brats(t, lambda r: _twin(r, lambda source, target: target.symlink_to(source))),
        "S3_t1.nii.gz lead to the same file",
    ),
    "copied subject": (
        lambda g, t: _brats(t, lambda r: _twin(r, shutil.copyfile)),
        "S3_t1.nii.gz have identical content",
    ),
    "label id outside dataset.json": (
        lambda g, t: _msd(t, _msd_label),
        "abd_002.nii.gz: label values [9] outside the label ids of the layout (and label_ids)",
    ),
    "case listed twice": (lambda g, t: _msd(t, _msd_listed_twice), "subject 'abd_001' appears twice"),
    "image of two patients": (
        lambda g, t: _fetal(t, _image_of_two_patients),
        "subjects 'patient-1209' and 'patient-1300' are duplicates",
    ),
}


def _grid(tmp_path: Path, case: str) -> Path:
    """The tiny grid with one downstream task on the broken dataset of ``case``."""
    grid = tiny_grid(tmp_path / "unused", initialisations=["random"], fractions=[1.0])
    data = CATALOGUE[case][0](grid, tmp_path)
    task = TASK[data["data"]["type"]]
    grid.update(datasets=data, downstream_tasks=[task], downstream={task: {"dataset": "data"}})
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def _user_files(tmp_path: Path) -> dict[str, bytes]:
    """Every file the test wrote as the user's data (not the run folder), by path."""
    files = (p for p in sorted(tmp_path.rglob("*")) if p.is_file() and "out" not in p.relative_to(tmp_path).parts)
    return {str(path): path.read_bytes() for path in files}


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_bad_data_is_one_line_exit_2_nothing_recorded_and_nothing_changed(case, tmp_path, capsys):
    out = tmp_path / "out"
    grid = _grid(tmp_path, case)
    before = _user_files(tmp_path)
    code = main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert CATALOGUE[case][1] in err, err
    assert not (out / "mlflow.db").exists()
    assert _user_files(tmp_path) == before
