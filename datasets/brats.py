"""BraTS brain-tumour MRI in its release folder layout (Menze et al. 2015; Bakas et al. 2017, 2018).

One folder per subject holding four modalities and a segmentation, ``.nii`` or ``.nii.gz``, exactly one file of each,
named after the folder (hidden files and folders, such as ``.ipynb_checkpoints/``, are ignored):

* 2017-2021 naming: ``<ID>_{t1,t1ce,t2,flair,seg}.nii.gz``; labels 0 background, 1 necrotic /
  non-enhancing core, 2 edema, 4 enhancing tumour.
* 2023 naming: ``<ID>-{t1n,t1c,t2w,t2f,seg}.nii.gz``; the same labels with enhancing tumour as 3.

In memory, labels are canonical classes: 0 background, 1 necrotic core, 2 edema, 3 enhancing.
Regions (BraTS convention): whole tumour = {1, 2, 3}, tumour core = {1, 3}, enhancing = {3}.
Arrays are reoriented to the closest canonical (RAS+) axes, so slices along the last axis are axial.
Each modality is z-score normalised inside the brain mask (voxels where any modality is non-zero)
and set to 0 outside it. Decoded, normalised subjects are cached under the run folder in the compact layout (cropped to the brain,
slice-major, lossless 16-bit codes: :mod:`.compact_layout`) and read back memory-mapped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
from ssl_medbench.datasets.phantom_generators.brats import PhantomSpec
from ssl_medbench.datasets.preprocessing import checked_image, checked_labels, normalise
from ssl_medbench.datasets.splits import Split, split_subjects, test_fraction_field

CHANNELS = ("t1", "t1ce", "t2", "flair")
CLASSES = ("background", "necrotic_core", "edema", "enhancing")
REGIONS = {"whole": (1, 2, 3), "core": (1, 3), "enhancing": (3,)}

#: file suffix -> canonical modality, per naming convention, and the stored label of enhancing tumour
NAMING = {
    "2017-2021": ({"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", "seg": "seg"}, 4),
    "2023": ({"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair", "seg": "seg"}, 3),
}
_NIFTI = re.compile(r"^(?P<stem>.+?)[_-](?P<suffix>[A-Za-z0-9]+)\.nii(\.gz)?$", re.IGNORECASE)


@dataclass(frozen=True)
class SubjectFiles:
    subject_id: str
    naming: str
    files: dict[str, Path]  # canonical modality or "seg" -> path

    @property
    def enhancing_label(self) -> int:
        return NAMING[self.naming][1]


def _visible(path: Path) -> bool:
    """Not a hidden entry (``.DS_Store``, ``.ipynb_checkpoints/``, macOS ``._*`` files)."""
    return not path.name.startswith(".")


def _nifti_files(folder: Path) -> dict[str, list[Path]]:
    """The folder's visible NIfTI files by lower-case suffix (the part after the last ``_`` or ``-``)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        match = _NIFTI.match(path.name)
        if match and _visible(path):
            found.setdefault(match["suffix"].lower(), []).append(path)
    return found


def subject_folders(root: Path) -> list[Path]:
    """The visible subfolders of ``root``, sorted; DataError naming those that hold no visible NIfTI file (files
    beside the folders, such as ``name_mapping.csv``, are ignored)."""
    folders = sorted(p for p in root.iterdir() if _visible(p) and p.is_dir())
    without = [p.name for p in folders if not _nifti_files(p)]
    if without:
        shown = ", ".join(without[:5]) + (", ..." if len(without) > 5 else "")
        raise DataError(
            f"{root}: folder(s) {shown} hold no NIfTI file, so are not BraTS subjects (expected <ID>/<ID>_t1.nii.gz ...); "
            "move them out, hide them (a name starting with '.'), or point root at the folder of the subjects"
        )
    return folders


def find_subject_files(folder: Path) -> SubjectFiles:
    """Identify the naming convention and the five files of one subject folder; DataError if one is missing, found
    twice, or named after another subject."""
    found = _nifti_files(folder)
    naming = "2023" if {"t1n", "t1c", "t2w", "t2f"} & set(found) else "2017-2021"
    mapping, _ = NAMING[naming]
    for suffix in mapping:
        if len(found.get(suffix, [])) > 1:
            names = ", ".join(path.name for path in found[suffix])
            raise DataError(f"{folder}: {len(found[suffix])} files for {suffix} ({names}); expected exactly one")
    files = {canonical: found[suffix][0] for suffix, canonical in mapping.items() if suffix in found}
    missing = [suffix for suffix, canonical in mapping.items() if canonical not in files]
    if missing:
        raise DataError(
            f"{folder}: missing {', '.join(missing)} (BraTS {naming} naming expects "
            f"{', '.join(f'*_{s}.nii.gz' if naming != '2023' else f'*-{s}.nii.gz' for s in mapping)})"
        )
    foreign = [path.name for path in files.values() if _NIFTI.match(path.name)["stem"] != folder.name]
    if foreign:
        raise DataError(
            f"{folder}: {', '.join(foreign)} not named after the subject folder (expected {folder.name}"
            f"{'-' if naming == '2023' else '_'}<modality>.nii.gz)"
        )
    return SubjectFiles(subject_id=folder.name, naming=naming, files=files)


def canonical_labels(seg: np.ndarray, enhancing_label: int, path: Path) -> np.ndarray:
    """Map stored labels (as stored, before any cast) to canonical classes; DataError naming the file on any other
    value, a fraction, NaN or infinity."""
    labels = checked_labels(seg, path, (0, 1, 2, enhancing_label), "BraTS convention").astype(np.uint8)
    labels[labels == enhancing_label] = 3
    return labels


def region_masks(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the BraTS regions (whole, core, enhancing) from canonical labels."""
    return {name: np.isin(labels, classes) for name, classes in REGIONS.items()}


@DATASETS.register("brats")
class BratsFolder(CachedDataset["_CachedSubject"]):
    """A folder of BraTS subjects; ``Config.root`` points at it."""

    channels = CHANNELS

    @dataclass(frozen=True)
    class Config:
        root: str = folder_path()
        test_fraction: float = test_fraction_field(0.2)
        split_seed: int = 0

    @classmethod
    def example_config(cls, folder: Path) -> Config:
        """Six tiny brain-tumour phantoms (:meth:`PhantomSpec.example`) in the BraTS 2021 layout."""
        PhantomSpec.example().generate(folder)
        return cls.Config(root=str(folder))

    @property
    def root(self) -> Path:
        if not self.config.root:
            raise DataError("dataset 'brats' needs 'root': the folder holding one subfolder per BraTS subject")
        return user_path(self.config.root, "root")

    @property
    def cache_folder(self) -> Path:
        return self.workdir / "cache" / "preprocessed"

    def prepare(self) -> None:
        """Check every subject and cache it decoded and normalised; later runs only hash unchanged files by size and mtime.

        Hidden entries are ignored; a subject folder reached twice (a symlink), a file shared by two subjects or
        an image identical to another subject's (a copy) is a DataError naming both subjects. A subject is decoded
        once, in the preparation workers (:mod:`ssl_medbench.core.parallel`) after every subject was checked: that
        catches truncated files and labels outside the convention, and writes
        ``<subject>-<digest>_{images,palette,labels}.npy``. The digest covers its five files, so a changed file re-caches
        that subject alone; a cache entry that no longer matches its record is decoded again.
        """
        root = self.root
        if not root.is_dir():
            raise DataError(f"{root}: BraTS folder does not exist")
        folders = subject_folders(root)
        if not folders:
            raise DataError(f"{root}: no subject folders with NIfTI files (expected <root>/<ID>/<ID>_t1.nii.gz ...)")
        duplicates = DuplicateGuard(root)
        for folder in folders:
            duplicates.add(folder.name, folder)
        subjects = [find_subject_files(folder) for folder in folders]
        hashes = FileHashes(self.workdir / "cache" / "file_hashes.json")
        cached, lines, stale = {}, [], []
        try:
            with progress_bar(total=len(subjects), desc=f"checking {root.name}", unit="subject") as bar:
                for subject in subjects:
                    spacing = _check_geometry(subject)
                    digests = {kind: hashes.sha256(path) for kind, path in sorted(subject.files.items())}
                    for kind, path in subject.files.items():
                        duplicates.add(subject.subject_id, path, None if kind == "seg" else digests[kind])
                    lines += [
                        f"{subject.subject_id}/{subject.files[kind].name}:{digest}" for kind, digest in digests.items()
                    ]
                    key = cache_key(digests)
                    entry = _CachedSubject(self.cache_folder / f"{subject.subject_id}-{key}", spacing)
                    if not entry.intact():
                        stale.append((entry, subject))
                    cached[subject.subject_id] = entry
                    bar.update(1)
        finally:
            hashes.save()
        self._decode(stale, _write_entry, root.name, "subject")
        self._prepared(cached, lines)

    def split(self) -> Split:
        return split_subjects(self.subject_ids(), self.config.test_fraction, self.config.split_seed)

    def load(self, subject_id: str) -> Volume:
        return self._require_prepared()[subject_id].volume(subject_id)


def _write_entry(stale: tuple[_CachedSubject, SubjectFiles]) -> None:
    entry, subject = stale
    entry.write(subject)


def _check_geometry(subject: SubjectFiles) -> tuple[float, float, float]:
    """Every file readable, 3D, on the same grid as the T1 image; returns the canonical voxel spacing in mm."""
    return check_same_grid(subject.files["t1"], list(subject.files.values()))


@dataclass(frozen=True)
class _CachedSubject(CachedVolume):
    """A subject's decoded, normalised arrays in the preprocessing cache (``<stem>_images.npy``, ``<stem>_labels.npy``)."""

    def write(self, subject: SubjectFiles) -> None:
        """Decode, normalise and save; each file written atomically."""
        images, labels = decode_subject(subject)
        self.save_volume(images, labels)


def decode_subject(subject: SubjectFiles) -> tuple[np.ndarray, np.ndarray]:
    """The subject's normalised images (4, x, y, z) and canonical labels from its NIfTI files: the work the cache
    does once per subject. DataError on truncated files or bad labels."""
    images = normalise(
        np.stack([checked_image(read_array(subject.files[channel]), subject.files[channel]) for channel in CHANNELS])
    )
    seg_path = subject.files["seg"]
    return images, canonical_labels(read_array(seg_path, None), subject.enhancing_label, seg_path)
