"""FETAL_PLANES_DB and MedMNIST loaders on folders written in the real layouts, the ultrasound phantom, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from ssl_medbench.core.errors import DataError
from ssl_medbench.datasets.fetal_planes import CSV_NAME, PLANES, FetalPlanesFolder
from ssl_medbench.datasets.medmnist import MedMNISTFile
from ssl_medbench.datasets.phantom_generators.fetal_ultrasound import FetalPhantomSpec, generate_fetal_phantoms

HEADER = "Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train "
ROWS = [  # name, patient, plane, brain plane, train
    ("Patient01209_Plane2_1_of_3", 1209, "Fetal brain", "Trans-thalamic", 1),
    ("Patient01209_Plane1_2_of_3", 1209, "Fetal abdomen", "Not A Brain", 1),
    ("Patient01209_Plane6_3_of_3", 1209, "Other", "Not A Brain", 1),
    ("Patient01210_Plane2_1_of_2", 1210, "Fetal brain", "Trans-cerebellum", 1),
    ("Patient01210_Plane3_2_of_2", 1210, "Fetal femur", "Not A Brain", 1),
    ("Patient01300_Plane2_1_of_2", 1300, "Fetal brain", "Other", 0),
    ("Patient01300_Plane5_2_of_2", 1300, "Maternal cervix", "Not A Brain", 0),
]


def write_fetal_db(root: Path, rows=ROWS, header: str = HEADER) -> Path:
    """A FETAL_PLANES_DB folder in the release layout, with PNGs of varied sizes and modes."""
    (root / "Images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, (name, *_rest) in enumerate(rows):
        pixels = rng.integers(1, 255, (40 + 5 * index, 60 + 3 * index), dtype=np.uint8)
        image = Image.fromarray(pixels, mode="L")
        sixteen_bit = Image.fromarray(pixels.astype(np.uint16) * 257)
        image = [image, image.convert("RGB"), image.convert("RGBA"), sixteen_bit][index % 4]
        image.save(root / "Images" / f"{name}.png")
    lines = [header] + [
        f"{name};{patient};{plane};{brain};Op. 1;Voluson E6;{train}" for name, patient, plane, brain, train in rows
    ]
    (root / CSV_NAME).write_text("\n".join(lines) + "\n")
    return root


def _add_row(root: Path, row: str) -> None:
    (root / CSV_NAME).write_text((root / CSV_NAME).read_text() + row + "\n")


def _load(root: Path, tmp_path: Path, **config) -> FetalPlanesFolder:
    dataset = FetalPlanesFolder(FetalPlanesFolder.Config(root=str(root), image_size=32, **config), tmp_path / "work")
    dataset.prepare()
    return dataset


def test_real_layout_loads_per_patient_with_classes_split_and_resized_grey_images(tmp_path):
    dataset = _load(write_fetal_db(tmp_path / "db"), tmp_path)
    assert dataset.class_names == PLANES
    assert dataset.subject_ids() == ["patient-1209", "patient-1210", "patient-1300"]
    split = dataset.split()
    assert split.train == ("patient-1209", "patient-1210") and split.test == ("patient-1300",)
    volume = dataset.load("patient-1209")
    assert volume.images.shape == (1, 32, 32, 3) and volume.images.dtype == np.float32
    assert [PLANES[c] for c in volume.slice_classes] == ["Fetal brain", "Fetal abdomen", "Other"]
    for z in range(3):  # z-scored per image inside the non-zero pixels
        image = np.asarray(volume.images[0, :, :, z])
        assert abs(image[image != 0].mean()) < 1e-4 and abs(image[image != 0].std() - 1) < 1e-3
    assert len(dataset.content_hash()) == 64
    sixteen = np.asarray(dataset.load("patient-1210").images[0, :, :, 0])  # ROWS[3] was written as a 16-bit PNG
    assert np.isfinite(sixteen).all() and sixteen.std() > 0.5


def test_brain_planes_can_refine_the_brain_class(tmp_path):
    dataset = _load(write_fetal_db(tmp_path / "db"), tmp_path, refine_brain_planes=True)
    assert len(dataset.class_names) == 9
    classes = [dataset.class_names[c] for c in dataset.load("patient-1210").slice_classes]
    assert classes == ["Fetal brain: trans-cerebellum", "Fetal femur"]
    assert dataset.class_names[dataset.load("patient-1300").slice_classes[0]] == "Fetal brain: other plane"


def test_a_changed_image_changes_the_hash_and_recaches_only_that_patient(tmp_path):
    root = write_fetal_db(tmp_path / "db")
    first = _load(root, tmp_path)
    Image.fromarray(np.random.default_rng(9).integers(1, 255, (30, 30), dtype=np.uint8)).save(
        root / "Images" / f"{ROWS[3][0]}.png"
    )
    second = _load(root, tmp_path)
    assert first.content_hash() != second.content_hash()
    assert np.array_equal(first.load("patient-1209").images, second.load("patient-1209").images)
    assert not np.array_equal(first.load("patient-1210").images, second.load("patient-1210").images)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (
            lambda root: (root / CSV_NAME).write_text((root / CSV_NAME).read_text().replace("Plane;", "Planes;", 1)),
            r"FETAL_PLANES_DB_data.csv: missing column\(s\) Plane",
        ),
        (
            lambda root: (root / "Images" / f"{ROWS[2][0]}.png").unlink(),
            r"Patient01209_Plane6_3_of_3.png: listed in FETAL_PLANES_DB_data.csv \(line 4\) but missing",
        ),
        (
            lambda root: (root / "Images" / f"{ROWS[1][0]}.png").write_bytes(b"not a png"),
            "Patient01209_Plane1_2_of_3.png: not a readable PNG image",
        ),
        (
            lambda root: (root / CSV_NAME).write_text(
                (root / CSV_NAME).read_text().replace("Fetal femur", "Fetal knee")
            ),
            "line 6: Plane 'Fetal knee' is not one of",
        ),
        (
            lambda root: (root / CSV_NAME).write_text(
                (root / CSV_NAME)
                .read_text()
                .replace(
                    "Maternal cervix;Not A Brain;Op. 1;Voluson E6;0", "Maternal cervix;Not A Brain;Op. 1;Voluson E6;1"
                )
            ),
            "patient 1300 has images in both the train and the test split",
        ),
        (lambda root: (root / CSV_NAME).unlink(), "FETAL_PLANES_DB table not found"),
        (
            lambda root: _add_row(root, f"{ROWS[0][0]};1300;Fetal brain;Other;Op. 1;Voluson E6;0"),
            r"subjects 'patient-1209' and 'patient-1300' are duplicates: .*Patient01209_Plane2_1_of_3.png lead to the same",
        ),
        (
            lambda root: (
                _add_row(root, "Patient01300_Plane2_9_of_9;1300;Fetal brain;Other;Op. 1;Voluson E6;0")
                or (root / "Images" / "Patient01300_Plane2_9_of_9.png").write_bytes(
                    (root / "Images" / f"{ROWS[0][0]}.png").read_bytes()
                )
            ),
            r"subjects 'patient-1209' and 'patient-1300' are duplicates: .*Patient01300_Plane2_9_of_9.png have identical",
        ),
    ],
)
def test_bad_fetal_planes_input_is_one_error_naming_the_file(breakage, message, tmp_path):
    root = write_fetal_db(tmp_path / "db")
    breakage(root)
    with pytest.raises(DataError, match=message):
        _load(root, tmp_path)


def test_label_fractions_are_nested_and_stratified_by_class(tmp_path):
    spec = FetalPhantomSpec(n_patients=24, images_per_patient=1, height=40, test_fraction=0.25)
    root = generate_fetal_phantoms(tmp_path / "phantom", spec)
    dataset = _load(root, tmp_path)
    train = dataset.split().train
    majority = {s: int(np.bincount(dataset.load(s).slice_classes).argmax()) for s in train}
    half = dataset.labelled_subjects(0.5, seed=3)
    quarter = dataset.labelled_subjects(0.25, seed=3)
    assert set(quarter) <= set(half) <= set(train) and len(half) == len(train) // 2
    counts = np.bincount([majority[s] for s in train], minlength=6)
    chosen = np.bincount([majority[s] for s in half], minlength=6)
    assert (np.abs(chosen - counts / 2) <= 1).all()  # every class in proportion, give or take one patient


def test_phantom_writes_the_release_layout_exactly(tmp_path):
    root = generate_fetal_phantoms(
        tmp_path / "phantom", FetalPhantomSpec(n_patients=4, images_per_patient=6, height=48)
    )
    lines = (root / CSV_NAME).read_text().splitlines()
    assert lines[0] == HEADER
    assert len(lines) == 1 + 24
    name, patient, plane, brain, operator, machine, train = lines[1].split(";")
    assert (root / "Images" / f"{name}.png").is_file() and plane in PLANES and train in ("0", "1")
    modes = {Image.open(path).mode for path in (root / "Images").glob("*.png")}
    sizes = {Image.open(path).size for path in (root / "Images").glob("*.png")}
    assert modes == {"L", "RGB"} and len(sizes) > 5
    brains = [line.split(";")[3] for line in lines[1:] if line.split(";")[2] == "Fetal brain"]
    assert brains and set(brains) <= {"Trans-thalamic", "Trans-cerebellum", "Trans-ventricular"}


def test_phantom_images_of_one_patient_share_one_examination(tmp_path):
    """One machine and operator per patient, and a look (gain, attenuation, speckle) shared by the patient's images:
    images of one patient are more alike than images of different patients."""
    root = generate_fetal_phantoms(
        tmp_path / "phantom", FetalPhantomSpec(n_patients=16, images_per_patient=6, height=48)
    )
    rows = [line.split(";") for line in (root / CSV_NAME).read_text().splitlines()[1:]]
    patients: dict[str, list[list[float]]] = {}
    for name, patient, _plane, _brain, operator, machine, _train in rows:
        assert {(operator, machine)} == {(r[4], r[5]) for r in rows if r[1] == patient}
        pixels = np.asarray(Image.open(root / "Images" / f"{name}.png").convert("L"), np.float32)
        sector = pixels[pixels > 0]
        patients.setdefault(patient, []).append([sector.mean(), np.median(sector)])
    assert len({r[5] for r in rows}) > 1  # machines differ between patients
    looks = [np.array(images) for images in patients.values()]
    within = np.mean([images.std(axis=0) for images in looks], axis=0)
    between = np.std([images.mean(axis=0) for images in looks], axis=0)
    assert (between > 1.5 * within).all(), (between, within)


def test_phantom_classes_are_not_separable_by_intensity_statistics_alone(tmp_path):
    root = generate_fetal_phantoms(
        tmp_path / "phantom", FetalPhantomSpec(n_patients=40, images_per_patient=6, height=64)
    )
    rows = [line.split(";") for line in (root / CSV_NAME).read_text().splitlines()[1:]]
    features, labels = [], []
    for name, _, plane, *_ in rows:
        pixels = np.asarray(Image.open(root / "Images" / f"{name}.png").convert("L"), np.float32)
        sector = pixels[pixels > 0]
        features.append(
            [sector.mean(), sector.std(), *np.percentile(sector, [5, 25, 50, 75, 95]), sector.size / pixels.size]
        )
        labels.append(PLANES.index(plane))
    features = np.array(features)
    features = (features - features.mean(0)) / features.std(0)
    accuracy = cross_val_score(LogisticRegression(max_iter=2000), features, labels, cv=4).mean()
    assert accuracy < 0.6, accuracy  # six classes: chance is 1/6; the anatomy, not the histogram, has to be learnt


def write_medmnist(path: Path, rgb: bool = False, labels_columns: int = 1) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", 12), ("val", 4), ("test", 6)):
        shape = (count, 28, 28, 3) if rgb else (count, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 255, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 3, (count, labels_columns)).astype(np.uint8)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("rgb", [False, True])
def test_medmnist_npz_loads_with_train_val_as_training_and_stratified_fractions(rgb, tmp_path):
    path = write_medmnist(tmp_path / "bloodmnist.npz", rgb=rgb)
    dataset = MedMNISTFile(MedMNISTFile.Config(path=str(path), image_size=32, class_names=("a", "b", "c")), tmp_path)
    dataset.prepare()
    split = dataset.split()
    assert len(split.train) == 16 and len(split.test) == 6 and split.test[0] == "test-000000"
    volume = dataset.load("val-000002")
    assert volume.images.shape == (1, 32, 32, 1) and volume.slice_classes.shape == (1,)
    assert dataset.class_names == ("a", "b", "c")
    assert set(dataset.labelled_subjects(0.25, 0)) <= set(dataset.labelled_subjects(0.5, 0))


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda p: write_medmnist(p, labels_columns=14), "multi-label MedMNIST files are not supported"),
        (lambda p: np.savez(p, train_images=np.zeros((2, 28, 28), np.uint8)), "missing array train_labels"),
        (lambda p: p.write_bytes(b"garbage"), "not a readable .npz file"),
        (
            lambda p: np.savez(p, train_images=np.zeros((2, 28, 28), np.uint8), train_labels=np.array([[0.0], [1.5]])),
            r"x.npz: train_labels: label values \[1.5\] outside the MedMNIST class indices 0..255",
        ),
        (
            lambda p: np.savez(p, train_images=np.zeros((2, 28, 28), np.uint8), train_labels=np.array([[-1], [1]])),
            r"train_labels: label values \[-1\] outside",
        ),
    ],
)
def test_bad_medmnist_files_name_the_file(write, message, tmp_path):
    path = tmp_path / "x.npz"
    write(path)
    with pytest.raises(DataError, match=message):
        MedMNISTFile(MedMNISTFile.Config(path=str(path)), tmp_path).prepare()


def test_a_zeroed_cache_file_is_decoded_again(tmp_path, capsys):
    root = write_fetal_db(tmp_path / "db")
    first = _load(root, tmp_path).load("patient-1209")
    [path] = (tmp_path / "work" / "cache" / "preprocessed" / "fetal_planes").glob("patient-1209-*_classes.npy")
    path.write_bytes(bytes(path.stat().st_size))
    again = _load(root, tmp_path).load("patient-1209")
    assert np.array_equal(again.slice_classes, first.slice_classes) and np.array_equal(again.images, first.images)
    assert f"note: {path}: cache file edited since it was written" in capsys.readouterr().err
