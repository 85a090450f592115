"""FETAL_PLANES_DB (Burgos-Artizzu et al. 2020, "Evaluation of deep convolutional neural networks for
automatic classification of common maternal fetal ultrasound planes", Scientific Reports) in its release layout.

``<root>/FETAL_PLANES_DB_data.csv``, semicolon-separated, header
``Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train `` (the release has a trailing
space after ``Train``; column names are stripped), and ``<root>/Images/<Image_name>.png``
(``Image_name`` has no extension). Classes come from ``Plane``: Fetal abdomen, Fetal brain, Fetal
femur, Fetal thorax, Maternal cervix, Other; with ``refine_brain_planes`` the brain class is split by
``Brain_plane`` into trans-thalamic, trans-cerebellum, trans-ventricular and other brain planes.
``Train`` (1/0) is the authors' patient-disjoint split; it is checked to be constant per patient.

One subject is one patient: its images, converted to grey and resized to ``image_size`` squared,
are stacked along the last axis (``Volume.slice_classes`` holds their classes) and z-scored per image
inside the non-zero (ultrasound sector) pixels. Each patient is decoded once into the ``.npy`` cache. One image
file listed twice, or two patients holding an image of identical content, is an error naming both patients.
Label fractions subsample training patients stratified by their most frequent class.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from ssl_medbench.core.config_fields import folder_path, user_path
from ssl_medbench.core.errors import DataError
from ssl_medbench.core.progress import progress_bar
from ssl_medbench.datasets import DATASETS
from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.cached import CachedDataset, CacheEntry
from ssl_medbench.datasets.file_hashes import DuplicateGuard, FileHashes
from ssl_medbench.datasets.preprocessing import checked_image, normalise
from ssl_medbench.datasets.splits import LabelBudget, Split, stratified_labelled_subjects

CSV_NAME = "FETAL_PLANES_DB_data.csv"
IMAGES_FOLDER = "Images"
COLUMNS = ("Image_name", "Patient_num", "Plane", "Brain_plane", "Operator", "US_Machine", "Train")
REQUIRED_COLUMNS = ("Image_name", "Patient_num", "Plane", "Brain_plane", "Train")
PLANES = ("Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax", "Maternal cervix", "Other")
BRAIN_PLANES = ("Trans-thalamic", "Trans-cerebellum", "Trans-ventricular")
_OTHER_BRAIN = "Fetal brain: other plane"


def class_names(refine_brain_planes: bool) -> tuple[str, ...]:
    if not refine_brain_planes:
        return PLANES
    brain = tuple(f"Fetal brain: {plane.lower()}" for plane in BRAIN_PLANES) + (_OTHER_BRAIN,)
    return PLANES[:1] + brain + PLANES[2:]


def read_table(csv_path: Path) -> pd.DataFrame:
    """The CSV with stripped column names and values; DataError naming the file on a missing column or bad value."""
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: FETAL_PLANES_DB table not found (expected <root>/{CSV_NAME})")
    try:
        table = pd.read_csv(csv_path, sep=";", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise DataError(f"{csv_path}: not a readable semicolon-separated table ({error})") from None
    table.columns = [column.strip() for column in table.columns]
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise DataError(f"{csv_path}: missing column(s) {', '.join(missing)} (expected header {';'.join(COLUMNS)})")
    table = table.apply(lambda column: column.str.strip())
    for row, (plane, train) in enumerate(zip(table["Plane"], table["Train"]), start=2):
        if plane not in PLANES:
            raise DataError(f"{csv_path}: line {row}: Plane {plane!r} is not one of {', '.join(PLANES)}")
        if train not in ("0", "1"):
            raise DataError(f"{csv_path}: line {row}: Train must be 1 or 0, got {train!r}")
    if table.empty:
        raise DataError(f"{csv_path}: the table lists no images")
    return table


def read_png(path: Path, size: int) -> np.ndarray:
    """A PNG of any mode as grey float32 (size, size) on a 0-255 scale (16-bit images rescaled), resized bilinearly."""
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I"):
                grey = np.asarray(image, dtype=np.float32) * (255 / 65535)
            else:
                grey = np.asarray(image.convert("L"), dtype=np.float32)
            resized = Image.fromarray(grey, mode="F").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(resized, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable PNG image ({type(error).__name__}: {error})") from None


@DATASETS.register("fetal_planes_db")
class FetalPlanesFolder(CachedDataset["_CachedPatient"]):
    """A FETAL_PLANES_DB folder; ``Config.root`` points at the folder holding the CSV and ``Images/``."""

    channels = ("ultrasound",)

    @dataclass(frozen=True)
    class Config:
        root: str = folder_path()
        #: Side of the square images the network sees, in pixels.
        image_size: int = 128
        #: Split "Fetal brain" by Brain_plane into its standard planes.
        refine_brain_planes: bool = False

    @classmethod
    def example_config(cls, folder: Path) -> Config:
        """Six patients of tiny ultrasound phantoms (:meth:`FetalPhantomSpec.example`) in this layout."""
        from ssl_medbench.datasets.phantom_generators.fetal_ultrasound import FetalPhantomSpec  # it imports this module

        FetalPhantomSpec.example().generate(folder)
        return cls.Config(root=str(folder))

    @property
    def root(self) -> Path:
        if not self.config.root:
            raise DataError(
                "dataset 'fetal_planes_db' needs 'root': the folder holding FETAL_PLANES_DB_data.csv and Images/"
            )
        return user_path(self.config.root, "root")

    @property
    def class_names(self) -> tuple[str, ...]:
        return class_names(self.config.refine_brain_planes)

    def _classes(self, table: pd.DataFrame) -> np.ndarray:
        names = self.class_names
        if not self.config.refine_brain_planes:
            return np.array([names.index(plane) for plane in table["Plane"]], dtype=np.int64)
        refined = {plane: f"Fetal brain: {plane.lower()}" for plane in BRAIN_PLANES}
        labels = [
            refined.get(brain, _OTHER_BRAIN) if plane == "Fetal brain" else plane
            for plane, brain in zip(table["Plane"], table["Brain_plane"])
        ]
        return np.array([names.index(label) for label in labels], dtype=np.int64)

    def prepare(self) -> None:
        """Read the table, check every listed image and the split, and cache each patient decoded."""
        if self.config.image_size < 8:
            raise DataError(f"fetal planes image_size must be >= 8 pixels, got {self.config.image_size}")
        root = self.root
        if not root.is_dir():
            raise DataError(f"{root}: FETAL_PLANES_DB folder does not exist")
        csv_path = root / CSV_NAME
        table = read_table(csv_path)
        table["class"] = self._classes(table)
        hashes = FileHashes(self.workdir / "cache" / "file_hashes.json")
        duplicates = DuplicateGuard(root)
        lines = [f"{CSV_NAME}:{hashes.sha256(csv_path)}"]
        patients, stale = {}, []
        settings = json.dumps({"image_size": self.config.image_size, "refine": self.config.refine_brain_planes})
        try:
            groups = list(table.groupby("Patient_num", sort=True))
            with progress_bar(total=len(groups), desc=f"checking {root.name}", unit="patient") as bar:
                for number, rows in groups:
                    if rows["Train"].nunique() != 1:
                        raise DataError(f"{csv_path}: patient {number} has images in both the train and the test split")
                    paths = [root / IMAGES_FOLDER / f"{name}.png" for name in rows["Image_name"]]
                    for path, line in zip(paths, rows.index + 2):
                        if not path.is_file():
                            raise DataError(f"{path}: listed in {CSV_NAME} (line {line}) but missing")
                    digests = [hashes.sha256(path) for path in paths]
                    subject = f"patient-{number}"
                    for path, digest in zip(paths, digests):
                        duplicates.add(subject, path, digest)
                    lines += [f"{path.name}:{digest}" for path, digest in zip(paths, digests)]
                    key = hashlib.sha256(json.dumps([settings, digests]).encode()).hexdigest()[:16]
                    entry = _CachedPatient(
                        self.workdir / "cache" / "preprocessed" / "fetal_planes" / f"{subject}-{key}",
                        rows["Train"].iloc[0] == "1",
                    )
                    if not entry.intact():
                        stale.append((entry, paths, rows["class"].to_numpy()))
                    patients[subject] = entry
                    bar.update(1)
        finally:
            hashes.save()
        self._decode(stale, partial(_write_entry, self.config.image_size), root.name, "patient")
        self._prepared(patients, [settings, *lines])

    def split(self) -> Split:
        patients = self._require_prepared()
        train = tuple(sorted(s for s, entry in patients.items() if entry.train))
        test = tuple(sorted(s for s, entry in patients.items() if not entry.train))
        if not train or not test:
            raise DataError(
                f"{self.root / CSV_NAME}: the Train column must mark some patients 1 (train) and some 0 (test)"
            )
        return Split(train=train, test=test)

    def labelled_subjects(self, budget: LabelBudget | float, seed: int) -> list[str]:
        patients = self._require_prepared()
        strata = {subject: str(np.bincount(np.load(entry.classes)).argmax()) for subject, entry in patients.items()}
        return stratified_labelled_subjects(self.split().train, strata, budget, seed)

    def load(self, subject_id: str) -> Volume:
        entry = self._require_prepared()[subject_id]
        images = np.load(entry.images, mmap_mode="r")
        return Volume(subject_id, images, np.zeros(images.shape[1:], np.uint8), (1.0, 1.0, 1.0), np.load(entry.classes))


def _write_entry(size: int, stale: tuple[_CachedPatient, list[Path], np.ndarray]) -> None:
    entry, paths, classes = stale
    entry.write(paths, classes, size)


@dataclass(frozen=True)
class _CachedPatient(CacheEntry):
    """A patient's images (1, S, S, N) and classes (N,) in the preprocessing cache."""

    kinds: ClassVar[tuple[str, ...]] = ("images", "classes")
    train: bool

    @property
    def images(self) -> Path:
        return self.path("images")

    @property
    def classes(self) -> Path:
        return self.path("classes")

    def write(self, paths: list[Path], classes: np.ndarray, size: int) -> None:
        images = np.stack([normalise(checked_image(read_png(path, size), path)[None])[0] for path in paths], axis=-1)[
            None
        ]
        self.save(images=images.astype(np.float32), classes=classes.astype(np.int64))
