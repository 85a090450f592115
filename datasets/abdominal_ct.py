"""Abdominal CT with organ labels in two release layouts: the Medical Segmentation Decathlon and BTCV.

* MSD (Antonelli et al. 2022): ``<root>/dataset.json`` whose ``training`` list holds
  ``{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}`` and whose ``labels`` names the
  label ids; organ ids are looked up there by name (``label_ids`` overrides). macOS ``._*`` entries
  are skipped.
* BTCV (Landman et al. 2015, "Multi-Atlas Labeling Beyond the Cranial Vault"): ``<root>/img/img0001.nii.gz``
  with ``<root>/label/label0001.nii.gz``; fixed ids (1 spleen, 2 right kidney, 3 left kidney, 6 liver,
  11 pancreas, ...; :data:`BTCV_LABELS`).

In memory: one channel, CT numbers clipped to the HU window [``window_min``, ``window_max``] and
scaled to [0, 1] (air and everything below the window is 0); labels are the configured ``organs`` as
canonical classes 1..K in that order (other labels 0); arrays in the closest canonical (RAS+) axes,
so boxes are aligned with the patient's left-right, posterior-anterior and inferior-superior axes.
Every subject is decoded once into the ``.npy`` cache; an organ absent from every training subject
is an error, and so are a label value that is not one of the layout's ids (or ``label_ids``), two cases of one id,
one file reached from two cases and two cases with identical images.
"""

from __future__ import annotations

import json
import re
from abc import abstractmethod
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from ssl_medbench.core.config_fields import folder_path, user_path
from ssl_medbench.core.errors import DataError
from ssl_medbench.core.progress import progress_bar
from ssl_medbench.datasets import DATASETS
from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.cached import CachedDataset, CachedVolume, cache_key
from ssl_medbench.datasets.file_hashes import DuplicateGuard, FileHashes
from ssl_medbench.datasets.nifti import check_same_grid, read_array
from ssl_medbench.datasets.preprocessing import checked_image, checked_labels
from ssl_medbench.datasets.splits import Split, split_subjects, test_fraction_field

ORGANS = ("left_kidney", "right_kidney", "liver", "spleen", "pancreas")
BTCV_LABELS = {
    "spleen": 1,
    "right_kidney": 2,
    "left_kidney": 3,
    "gallbladder": 4,
    "esophagus": 5,
    "liver": 6,
    "stomach": 7,
    "aorta": 8,
    "inferior_vena_cava": 9,
    "portal_and_splenic_vein": 10,
    "pancreas": 11,
    "right_adrenal_gland": 12,
    "left_adrenal_gland": 13,
}
_ALIASES = {"kidney_left": "left_kidney", "kidney_right": "right_kidney", "ivc": "inferior_vena_cava"}


def organ_key(name: str) -> str:
    """Normalised organ name: lower case, words joined by underscores, common aliases resolved."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    return _ALIASES.get(key, key)


@dataclass(frozen=True)
class CasePaths:
    subject_id: str
    image: Path
    label: Path


class AbdominalCT(CachedDataset["_CachedCase"]):
    """Shared decoding, caching and splitting of CT volumes with organ label maps; subclasses find the files."""

    channels = ("ct",)
    layout = ""

    @dataclass(frozen=True)
    class Config:
        root: str = folder_path()
        organs: tuple[str, ...] = ORGANS
        #: Organ name -> label id in the files (overrides the layout's own ids).
        label_ids: dict[str, int] = field(default_factory=dict)
        window_min: float = -160.0
        window_max: float = 240.0
        test_fraction: float = test_fraction_field(0.2)
        split_seed: int = 0

    @property
    def root(self) -> Path:
        if not self.config.root:
            raise DataError(f"dataset '{self.layout}' needs 'root': the folder of the {self.layout.upper()} release")
        return user_path(self.config.root, "root")

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(organ_key(organ) for organ in self.config.organs)

    @abstractmethod
    def cases(self) -> list[CasePaths]:
        """Every (image, label) pair of the release; DataError naming the file if one is missing."""

    @abstractmethod
    def layout_label_ids(self) -> dict[str, int]:
        """Organ name (normalised) -> label id as the layout defines them."""

    def known_label_ids(self) -> set[int]:
        """Every label id the files may hold: background, the layout's ids and ``label_ids``."""
        return {0, *self.layout_label_ids().values(), *self.config.label_ids.values()}

    def organ_ids(self) -> list[int]:
        known = {organ_key(name): value for name, value in self.layout_label_ids().items()}
        known |= {organ_key(name): value for name, value in self.config.label_ids.items()}
        missing = [organ for organ in self.class_names if organ not in known]
        if missing:
            raise DataError(
                f"{self.root}: no label id for organ(s) {', '.join(missing)} (known: {', '.join(sorted(known))}); set label_ids"
            )
        return [known[organ] for organ in self.class_names]

    def prepare(self) -> None:
        if not self.config.organs:
            raise DataError(f"dataset '{self.layout}': organs must not be empty")
        if self.config.window_max <= self.config.window_min:
            raise DataError(f"dataset '{self.layout}': window_max must exceed window_min")
        if not self.root.is_dir():
            raise DataError(f"{self.root}: {self.layout.upper()} folder does not exist")
        cases = self.cases()
        if len(cases) < 2:
            raise DataError(f"{self.root}: found {len(cases)} labelled case(s); need at least 2")
        _check_unique_ids(self.root, cases)
        ids = self.organ_ids()
        known = self.known_label_ids()
        settings = json.dumps({"ids": ids, "window": [self.config.window_min, self.config.window_max]})
        hashes = FileHashes(self.workdir / "cache" / "file_hashes.json")
        duplicates = DuplicateGuard(self.root)
        cached, lines, stale = {}, [settings], []
        try:
            with progress_bar(total=len(cases), desc=f"checking {self.root.name}", unit="subject") as bar:
                for case in cases:
                    spacing = check_same_grid(case.image, [case.label])
                    digests = [hashes.sha256(case.image), hashes.sha256(case.label)]
                    duplicates.add(case.subject_id, case.image, digests[0])
                    duplicates.add(case.subject_id, case.label)
                    lines.append(f"{case.subject_id}:{':'.join(digests)}")
                    key = cache_key(settings, digests)
                    entry = _CachedCase(
                        self.workdir / "cache" / "preprocessed" / self.layout / f"{case.subject_id}-{key}", spacing
                    )
                    if not entry.intact():
                        stale.append((entry, case))
                    cached[case.subject_id] = entry
                    bar.update(1)
        finally:
            hashes.save()
        window = (self.config.window_min, self.config.window_max)
        self._decode(stale, partial(_write_entry, ids, known, window), self.root.name, "subject")
        self._prepared(cached, lines)
        self._check_organs_present()

    def _check_organs_present(self) -> None:
        seen = np.zeros(len(self.class_names) + 1, bool)
        for subject in self.split().train:
            seen |= np.bincount(np.asarray(self.load(subject).labels).ravel(), minlength=len(seen))[: len(seen)] > 0
        absent = [organ for organ, present in zip(self.class_names, seen[1:]) if not present]
        if absent:
            raise DataError(
                f"{self.root}: organ(s) {', '.join(absent)} absent from every training subject; check organs / label_ids"
            )

    def split(self) -> Split:
        return split_subjects(self.subject_ids(), self.config.test_fraction, self.config.split_seed)

    def load(self, subject_id: str) -> Volume:
        return self._require_prepared()[subject_id].volume(subject_id)


def _write_entry(
    organ_ids: list[int], known_ids: set[int], window: tuple[float, float], stale: tuple[_CachedCase, CasePaths]
) -> None:
    entry, case = stale
    entry.write(case, organ_ids, known_ids, *window)


def _is_junk(path: Path) -> bool:
    return path.name.startswith("._")


def _check_unique_ids(root: Path, cases: list[CasePaths]) -> None:
    """DataError naming both images if two cases have one subject id (the image's file name without ``.nii*``)."""
    seen: dict[str, Path] = {}
    for case in cases:
        if case.subject_id in seen:
            raise DataError(
                f"{root}: subject '{case.subject_id}' appears twice ({seen[case.subject_id]} and {case.image}); "
                "list each case once, under a name of its own"
            )
        seen[case.subject_id] = case.image


@DATASETS.register("msd")
class MSDFolder(AbdominalCT):
    """A Medical Segmentation Decathlon task folder (``Config.root`` holds ``dataset.json``)."""

    layout = "msd"

    @classmethod
    def example_config(cls, folder: Path) -> AbdominalCT.Config:
        """Six tiny CT phantoms (:meth:`CTPhantomSpec.example`) in the MSD layout, with BTCV label ids."""
        from ssl_medbench.datasets.phantom_generators.abdominal_ct import CTPhantomSpec  # it imports this module

        CTPhantomSpec.example().generate(folder)
        return cls.Config(root=str(folder))

    def _description(self) -> dict:
        path = self.root / "dataset.json"
        if not path.is_file():
            raise DataError(f"{path}: not found (an MSD task folder holds dataset.json, imagesTr/ and labelsTr/)")
        try:
            description = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(description.get("training"), list) or not isinstance(description.get("labels"), dict):
            raise DataError(f"{path}: expected a 'training' list and a 'labels' mapping")
        return description

    def layout_label_ids(self) -> dict[str, int]:
        return {name: int(value) for value, name in self._description()["labels"].items() if int(value) > 0}

    def cases(self) -> list[CasePaths]:
        json_path = self.root / "dataset.json"
        cases = []
        for number, entry in enumerate(self._description()["training"]):
            if not isinstance(entry, dict) or not {"image", "label"} <= set(entry):
                raise DataError(f"{json_path}: training entry {number} needs 'image' and 'label'")
            image, label = (self.root / entry[key] for key in ("image", "label"))
            if _is_junk(image):
                continue
            for path in (image, label):
                if not path.is_file():
                    raise DataError(f"{path}: listed in {json_path} (training entry {number}) but missing")
            cases.append(CasePaths(image.name.split(".nii")[0], image, label))
        return cases


@DATASETS.register("btcv")
class BTCVFolder(AbdominalCT):
    """The BTCV abdomen release (``Config.root`` holds ``img/`` and ``label/``)."""

    layout = "btcv"

    @classmethod
    def example_config(cls, folder: Path) -> AbdominalCT.Config:
        """Six tiny CT phantoms (:meth:`CTPhantomSpec.example`) in the BTCV layout."""
        from ssl_medbench.datasets.phantom_generators import abdominal_ct as generator  # it imports this module

        spec = generator.CTPhantomSpec.example()
        for kind in ("img", "label"):
            (folder / kind).mkdir(parents=True, exist_ok=True)
        for index in range(spec.n_subjects):
            name = f"{index + 1:04d}.nii.gz"
            generator.write_subject(spec, index, folder / "img" / f"img{name}", folder / "label" / f"label{name}")
        return cls.Config(root=str(folder))

    def layout_label_ids(self) -> dict[str, int]:
        return dict(BTCV_LABELS)

    def cases(self) -> list[CasePaths]:
        images = (
            sorted(p for p in (self.root / "img").glob("img*.nii*") if not _is_junk(p))
            if (self.root / "img").is_dir()
            else []
        )
        if not images:
            raise DataError(
                f"{self.root}: no img/img*.nii.gz files (the BTCV layout is img/img0001.nii.gz + label/label0001.nii.gz)"
            )
        cases = []
        for image in images:
            label = self.root / "label" / image.name.replace("img", "label", 1)
            if not label.is_file():
                raise DataError(f"{image}: no label file {label}")
            cases.append(CasePaths(image.name.split(".nii")[0], image, label))
        return cases


@dataclass(frozen=True)
class _CachedCase(CachedVolume):
    """A subject's windowed image (1, x, y, z) and canonical organ labels (x, y, z) in the preprocessing cache."""

    def write(
        self, case: CasePaths, organ_ids: list[int], known_ids: set[int], window_min: float, window_max: float
    ) -> None:
        """Decode, window and save; DataError naming the label file on a value outside ``known_ids``."""
        hounsfield = checked_image(read_array(case.image), case.image)
        image = (np.clip(hounsfield, window_min, window_max) - window_min) / (window_max - window_min)
        stored = read_array(case.label, None)
        checked_labels(stored, case.label, known_ids, "label ids of the layout (and label_ids)")
        labels = np.zeros(stored.shape, np.uint8)
        for canonical, stored_id in enumerate(organ_ids, start=1):
            labels[stored == stored_id] = canonical
        self.save_volume(image[None].astype(np.float32), labels)
