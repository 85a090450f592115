"""MedMNIST (Yang et al. 2023, "MedMNIST v2") 2D datasets from their ``.npz`` files, for users who have them locally.

A file such as ``breastmnist.npz`` holds ``train_images``, ``train_labels``, ``val_images``,
``val_labels``, ``test_images``, ``test_labels``: images uint8 (N, H, W) or (N, H, W, 3), labels
(N, 1) class indices. RGB images are converted to grey (ITU-R 601 luma). MedMNIST has no patient
identifiers, so each image is its own subject; train and val images form the training split, the
test images the test split; label fractions are stratified by class. Multi-label files (labels with
more than one column, e.g. ChestMNIST) are not supported and refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ssl_medbench.core.config_fields import folder_path, user_path
from ssl_medbench.core.errors import DataError
from ssl_medbench.datasets import DATASETS
from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.cached import CachedDataset
from ssl_medbench.datasets.file_hashes import file_sha256
from ssl_medbench.datasets.preprocessing import checked_labels, normalise
from ssl_medbench.datasets.splits import LabelBudget, Split, stratified_labelled_subjects

SPLITS = {"train": "train", "val": "train", "test": "test"}
#: Labels are class indices, stored as uint8 in the release; anything else (a fraction, NaN, -1) is refused.
CLASS_INDICES = range(256)


def _grey(images: np.ndarray) -> np.ndarray:
    if images.ndim == 4 and images.shape[-1] == 3:
        return images @ np.array([0.299, 0.587, 0.114], np.float32)
    if images.ndim != 3:
        raise ValueError(f"expected (N, H, W) or (N, H, W, 3) images, got shape {images.shape}")
    return images.astype(np.float32)


@DATASETS.register("medmnist")
class MedMNISTFile(CachedDataset[Volume]):
    """One MedMNIST ``.npz`` file; ``Config.path`` points at it."""

    channels = ("image",)

    @dataclass(frozen=True)
    class Config:
        path: str = folder_path()
        #: Resize images to this side in pixels (0 keeps the file's size).
        image_size: int = 0
        #: Class names in label order (empty: class_0, class_1, ...).
        class_names: tuple[str, ...] = ()

    def __init__(self, config, workdir: Path):
        super().__init__(config, workdir)
        self._split: Split | None = None
        self._names: tuple[str, ...] = ()

    @classmethod
    def example_config(cls, folder: Path) -> Config:
        """A file of 28 x 28 grey images of three classes: eight training, two validation and four test images."""
        rng = np.random.default_rng(0)
        arrays = {}
        for prefix, count in (("train", 8), ("val", 2), ("test", 4)):
            arrays[f"{prefix}_images"] = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
            arrays[f"{prefix}_labels"] = (np.arange(count) % 3)[:, None]
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "examplemnist.npz", **arrays)
        return cls.Config(path=str(folder / "examplemnist.npz"))

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._names

    def prepare(self) -> None:
        if not self.config.path:
            raise DataError("dataset 'medmnist' needs 'path': a MedMNIST .npz file")
        path = user_path(self.config.path, "path")
        if not path.is_file():
            raise DataError(f"{path}: MedMNIST file does not exist")
        try:
            arrays = dict(np.load(path))
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: not a readable .npz file ({error})") from None
        volumes, parts = {}, {"train": [], "test": []}
        for prefix, part in SPLITS.items():
            if f"{prefix}_images" not in arrays:
                if prefix == "val":
                    continue
                raise DataError(
                    f"{path}: missing array {prefix}_images (a MedMNIST file has train_/val_/test_ images and labels)"
                )
            if f"{prefix}_labels" not in arrays:
                raise DataError(f"{path}: missing array {prefix}_labels")
            labels = arrays[f"{prefix}_labels"]
            if labels.ndim == 2 and labels.shape[1] != 1:
                raise DataError(
                    f"{path}: {prefix}_labels has {labels.shape[1]} columns; multi-label MedMNIST files are not supported"
                )
            checked_labels(labels, f"{path}: {prefix}_labels", CLASS_INDICES, "MedMNIST class indices")
            try:
                images = _grey(arrays[f"{prefix}_images"])
            except ValueError as error:
                raise DataError(f"{path}: {prefix}_images: {error}") from None
            if len(images) != len(labels):
                raise DataError(
                    f"{path}: {prefix}_images has {len(images)} images but {prefix}_labels {len(labels)} labels"
                )
            if self.config.image_size:
                images = F.interpolate(
                    torch.from_numpy(images)[:, None], size=self.config.image_size, mode="bilinear", align_corners=False
                )[:, 0].numpy()
            for index, (image, label) in enumerate(zip(images, labels.reshape(-1).astype(np.int64))):
                subject = f"{prefix}-{index:06d}"
                pixels = normalise(image[None])[..., None]
                volumes[subject] = Volume(
                    subject, pixels, np.zeros(pixels.shape[1:], np.uint8), (1.0, 1.0, 1.0), np.array([label])
                )
                parts[part].append(subject)
        count = 1 + max(int(v.slice_classes[0]) for v in volumes.values())
        if self.config.class_names and len(self.config.class_names) < count:
            raise DataError(
                f"{path}: labels go up to {count - 1} but class_names lists {len(self.config.class_names)} names"
            )
        self._names = tuple(self.config.class_names) or tuple(f"class_{k}" for k in range(count))
        self._split = Split(train=tuple(sorted(parts["train"])), test=tuple(sorted(parts["test"])))
        self._prepared(volumes, [f"{path.name}:{file_sha256(path)}", f"image_size:{self.config.image_size}"])

    def split(self) -> Split:
        self._require_prepared()
        assert self._split is not None
        return self._split

    def labelled_subjects(self, budget: LabelBudget | float, seed: int) -> list[str]:
        volumes = self._require_prepared()
        strata = {subject: str(int(volume.slice_classes[0])) for subject, volume in volumes.items()}
        return stratified_labelled_subjects(self.split().train, strata, budget, seed)

    def load(self, subject_id: str) -> Volume:
        return self._require_prepared()[subject_id]
