"""The bad-input catalogue (docs/bad_input.md): every case ends the command in one clear line, exit code 2, no traceback,
with the message the docs give, and nothing recorded as finished."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from benchmark.cli import main
from tests.brats_files import write_subject
from tests.conftest import tiny_grid
from tests.test_abdominal_ct import write_msd
from tests.test_fetal_planes import CSV_NAME, ROWS, write_fetal_db

pytestmark = pytest.mark.slow


def _brats(tmp_path: Path, damage: Callable[[Path], None] = lambda folder: None) -> dict:
    root = tmp_path / "brats"
    for index in range(3):
        write_subject(root, f"S{index}", seed=index)
    damage(root / "S1")
    return {"data": {"type": "brats", "root": str(root), "test_fraction": 0.34}}


def _save(array: np.ndarray, path: Path, affine: np.ndarray | None = None) -> None:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)


def _fetal(tmp_path: Path, damage: Callable[[Path], None]) -> dict:
    root = write_fetal_db(tmp_path / "fetal")
    damage(root)
    return {"data": {"type": "fetal_planes_db", "root": str(root), "image_size": 32}}


def _msd(tmp_path: Path, damage: Callable[[Path], None]) -> dict:
    root = write_msd(tmp_path / "msd")
    damage(root)
    return {"data": {"type": "msd", "root": str(root), "organs": ["spleen", "liver"], "test_fraction": 0.25}}


DATA_TASK = {
    "brats": "brats_segmentation",
    "fetal_planes_db": "fetal_plane_classification",
    "msd": "abdominal_organ_localisation",
}

#: case -> (how to break the grid or its data, the message documented in docs/bad_input.md)
CATALOGUE: dict[str, tuple[Callable, str]] = {
    "unknown key": (lambda g, t: g.update(colour="red"), "top level: unknown key 'colour'"),
    "unknown protocol": (
        lambda g, t: g.update(protocols=["linear"]),
        "protocols: unknown protocol 'linear': expected one of finetune, frozen, knn",
    ),
    "knn on a task that does not classify images": (
        lambda g, t: g.update(protocols=["finetune", "knn"]),
        "protocols: knn classifies images by their nearest labelled images, but brats_segmentation does not predict",
    ),
    "protocols of a task not in the grid": (
        lambda g, t: g.update(protocols_by_task={"fetal_plane_classification": ["knn"]}),
        "protocols_by_task.fetal_plane_classification: not one of this grid's downstream tasks",
    ),
    "no label budget": (
        lambda g, t: g.update(fractions=[]),
        "fractions, label_subjects: no label budget: give at least one label fraction or subject count",
    ),
    "label budget of 0 subjects": (lambda g, t: g.update(label_subjects=[0]), "label_subjects: must be >= 1"),
    "label budget above the training subjects": (
        lambda g, t: g.update(label_subjects=[500]),
        "label_subjects: brats_segmentation on dataset phantom: a label budget of 500 subjects needs 500 training",
    ),
    "two budgets that label the same subjects": (
        lambda g, t: g.update(fractions=[0.5], label_subjects=[1]),
        "label_subjects: brats_segmentation on dataset phantom: 1 subject and 50% both label 1 of its 3 training",
    ),
    "knn with no neighbour": (lambda g, t: g.update(knn={"neighbours": 0}), "knn.neighbours: must be >= 1"),
    "wrong type": (
        lambda g, t: g["pretrain"].update(epochs="ten"),
        "pretrain.epochs: expected an integer, got str 'ten'",
    ),
    "empty list": (lambda g, t: g.update(seeds=[]), "seeds: must not be empty"),
    "duplicate initialisations": (
        lambda g, t: g.update(initialisations=["random", "random"]),
        "initialisations: duplicate entries random",
    ),
    "fraction 0": (lambda g, t: g.update(fractions=[0]), "fractions: 0.0 is outside (0, 1]"),
    "fraction above 1": (lambda g, t: g.update(fractions=[1.5]), "fractions: 1.5 is outside (0, 1]"),
    "seed not an integer": (lambda g, t: g.update(seeds=[0.5]), "seeds[0]: expected an integer, got float 0.5"),
    "unregistered dataset type": (
        lambda g, t: g["datasets"]["phantom"].update(type="bratz"),
        "unknown dataset 'bratz'",
    ),
    "task on an undefined dataset": (
        lambda g, t: g["downstream"]["brats_segmentation"].update(dataset="nowhere"),
        "downstream.brats_segmentation.dataset: 'nowhere' is not defined under datasets",
    ),
    "unknown pretext task": (
        lambda g, t: g.update(initialisations=["random", "jigsw"]),
        "unknown pretext task 'jigsw'",
    ),
    "spatial_dims other than 2 or 3": (
        lambda g, t: g.update(spatial_dims=4),
        "spatial_dims: expected 2 (images) or 3 (volumes), got 4",
    ),
    "a 2D encoder in a 3D grid": (
        lambda g, t: g.update(spatial_dims=3),
        "encoder.name: chen_vgg is a 2D network, but spatial_dims is 3: use a 3D encoder (e.g. chen_vgg3d)",
    ),
    "a task without a 3D form in a 3D grid": (
        lambda g, t: g.update(
            spatial_dims=3,
            encoder={"name": "chen_vgg3d", "kwargs": {"channels": [4, 8]}},
            downstream_tasks=["abdominal_organ_localisation"],
            datasets={"ct": {"type": "abdominal_ct_phantom", "n_subjects": 4}},
            downstream={"abdominal_organ_localisation": {"dataset": "ct"}},
        ),
        "downstream_tasks: abdominal_organ_localisation has no 3D form (it works in 2D); remove it or set "
        "spatial_dims: 2",
    ),
    "unknown precision": (
        lambda g, t: g.update(runtime={"precision": "fp16"}),
        "runtime.precision: expected one of fp32, bf16, got 'fp16'",
    ),
    "empty data folder": (
        lambda g, t: (t / "empty").mkdir() or {"data": {"type": "brats", "root": str(t / "empty")}},
        "no subject folders with NIfTI files",
    ),
    "missing modality": (lambda g, t: _brats(t, lambda f: (f / "S1_t1ce.nii.gz").unlink()), "S1: missing t1ce"),
    "image/label shape mismatch": (
        lambda g, t: _brats(t, lambda f: _save(np.zeros((3, 3, 3), np.uint8), f / "S1_seg.nii.gz")),
        "S1_seg.nii.gz: shape (3, 3, 3) differs from S1_t1.nii.gz",
    ),
    "image/label affine mismatch": (
        lambda g, t: _brats(
            t, lambda f: _save(np.zeros((12, 10, 8), np.uint8), f / "S1_seg.nii.gz", np.diag([2.0, 1, 1, 1]))
        ),
        "S1_seg.nii.gz: affine differs from S1_t1.nii.gz",
    ),
    "labels outside the convention": (
        lambda g, t: _brats(t, lambda f: _save(np.full((12, 10, 8), 7, np.uint8), f / "S1_seg.nii.gz")),
        "S1_seg.nii.gz: label values [7] outside the BraTS convention",
    ),
    "NaN image": (
        lambda g, t: _brats(t, lambda f: _save(np.full((12, 10, 8), np.nan, np.float32), f / "S1_flair.nii.gz")),
        "S1_flair.nii.gz: contains NaN or infinite values",
    ),
    "constant image": (
        lambda g, t: _brats(t, lambda f: _save(np.full((12, 10, 8), 5, np.float32), f / "S1_t2.nii.gz")),
        "S1_t2.nii.gz: every voxel is 5; an image without contrast cannot be normalised",
    ),
    "truncated .nii.gz": (
        lambda g, t: _brats(t, lambda f: (f / "S1_t2.nii.gz").write_bytes((f / "S1_t2.nii.gz").read_bytes()[:2000])),
        "S1_t2.nii.gz: cannot decode image data, the file may be truncated",
    ),
    "PNG that is not an image": (
        lambda g, t: _fetal(t, lambda r: (r / "Images" / f"{ROWS[1][0]}.png").write_bytes(b"not a png")),
        "Patient01209_Plane1_2_of_3.png: not a readable PNG image",
    ),
    "CSV missing a column": (
        lambda g, t: _fetal(
            t, lambda r: (r / CSV_NAME).write_text((r / CSV_NAME).read_text().replace("Plane;", "Planes;", 1))
        ),
        "FETAL_PLANES_DB_data.csv: missing column(s) Plane",
    ),
    "patient in train and test": (
        lambda g, t: _fetal(
            t,
            lambda r: (r / CSV_NAME).write_text((r / CSV_NAME).read_text().replace("Voluson E6;0", "Voluson E6;1", 1)),
        ),
        "patient 1300 has images in both the train and the test split",
    ),
    "dataset.json path missing": (
        lambda g, t: _msd(t, lambda r: (r / "labelsTr" / "abd_002.nii.gz").unlink()),
        "labelsTr/abd_002.nii.gz: listed in",
    ),
    "organ absent from training": (
        lambda g, t: {
            "data": _msd(t, lambda r: None)["data"] | {"organs": ["spleen", "stomach"], "label_ids": {"stomach": 9}}
        },
        "organ(s) stomach absent from every training subject",
    ),
}


def _grid(tmp_path: Path, root: Path, case: str) -> Path:
    grid = tiny_grid(root, initialisations=["random"], fractions=[1.0])
    change = CATALOGUE[case][0](grid, tmp_path)
    if isinstance(change, dict):  # a data case: point the task at the broken dataset
        task = DATA_TASK[change["data"]["type"]]
        grid["datasets"] = change
        grid["downstream_tasks"] = [task]
        grid["downstream"] = {task: {"dataset": "data"}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_bad_input_is_one_documented_line_exit_2_and_nothing_recorded(case, tmp_path, tiny_phantom_root, capsys):
    out = tmp_path / "out"
    code = main(["run", "--grid", str(_grid(tmp_path, tiny_phantom_root, case)), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    message = CATALOGUE[case][1]
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert message in err, err
    assert not (out / "mlflow.db").exists()
