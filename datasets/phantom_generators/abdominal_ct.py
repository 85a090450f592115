"""Contrast-enhanced abdominal CT phantoms in Hounsfield units, written in the Medical Segmentation Decathlon layout.

World coordinates are RAS+ in mm (x towards the patient's right, y anterior, z superior), the volume
centred on the abdomen. Each subject has a body outline with subcutaneous fat and a muscle wall,
visceral fat with bowel-like loops (some holding gas), the spine and aorta, and five organs as
deformed ellipsoids with BTCV label ids in anatomically plausible places: the liver in the right
upper quadrant, the spleen left and posterior, both kidneys posterior beside the spine with the
right one lower than the left, the pancreas lying across the midline in front of them. Organ size
and position vary per subject, and one smooth random deformation field bends the whole anatomy.
Portal-venous HU values, Gaussian noise and a slight blur (partial volume); anisotropic voxels.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ssl_medbench.core.errors import ConfigError
from ssl_medbench.core.progress import progress_bar
from ssl_medbench.datasets.abdominal_ct import BTCV_LABELS
from ssl_medbench.datasets.phantom_generators.folder import build_once

#: Organ -> (centre x, y, z in mm, semi-axes in mm, HU), before per-subject variation.
ORGAN_LAYOUT = {
    "liver": ((65.0, 10.0, 45.0), (85.0, 75.0, 65.0), 110.0),
    "spleen": ((-95.0, -35.0, 50.0), (30.0, 45.0, 50.0), 120.0),
    "right_kidney": ((72.0, -55.0, -35.0), (28.0, 30.0, 50.0), 175.0),
    "left_kidney": ((-72.0, -55.0, -5.0), (28.0, 30.0, 50.0), 175.0),
    "pancreas": ((-5.0, 5.0, 10.0), (75.0, 14.0, 14.0), 100.0),
}
FAT_HU, MUSCLE_HU, BOWEL_HU, GAS_HU, BONE_HU, BLOOD_HU, AIR_HU = -100.0, 55.0, 35.0, -700.0, 600.0, 190.0, -1000.0


@dataclass(frozen=True)
class CTPhantomSpec:
    n_subjects: int = 8
    #: In-plane (x, y) voxel size in mm.
    spacing_xy_mm: float = 6.0
    #: Slice (z) spacing in mm.
    spacing_z_mm: float = 7.5
    noise_hu: float = 12.0
    seed: int = 0
    #: Field of view (x, y, z) in mm.
    field_of_view_mm: tuple[float, float, float] = (360.0, 260.0, 220.0)

    @classmethod
    def example(cls) -> CTPhantomSpec:
        """Six subjects at 20 mm (18 x 13 x 11 voxels), every organ in each, written in well under a second."""
        return cls(n_subjects=6, spacing_xy_mm=20.0, spacing_z_mm=20.0)

    def check(self, dataset: str) -> None:
        """ConfigError naming ``dataset`` for settings the generator cannot honour."""
        if self.n_subjects < 2:
            raise ConfigError(f"{dataset}.n_subjects must be >= 2, got {self.n_subjects}")

    def generate(self, root: Path) -> Path:
        return generate_ct_phantoms(root, self)


def _grid(spec: CTPhantomSpec) -> tuple[tuple[int, int, int], np.ndarray]:
    spacing = np.array([spec.spacing_xy_mm, spec.spacing_xy_mm, spec.spacing_z_mm])
    shape = tuple(int(round(fov / step)) for fov, step in zip(spec.field_of_view_mm, spacing))
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) * spacing / 2
    return shape, affine


def make_subject(spec: CTPhantomSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(HU int16, BTCV labels uint8) volumes on the spec's grid for subject ``index``."""
    rng = np.random.default_rng([spec.seed, index])
    shape, affine = _grid(spec)
    axes = [affine[i, i] * np.arange(n) + affine[i, 3] for i, n in enumerate(shape)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    smooth = [ndimage.gaussian_filter(rng.standard_normal(shape), 3) for _ in range(3)]
    x, y, z = (c + 8.0 * s / (s.std() + 1e-6) for c, s in zip((x, y, z), smooth))

    body_a, body_b = 165 * rng.uniform(0.92, 1.05), 115 * rng.uniform(0.92, 1.08)
    body = np.hypot(x / body_a, y / body_b)
    hu = np.full(shape, AIR_HU, np.float32)
    hu[body < 1] = FAT_HU
    hu[(body < 0.93) & (body > 0.86)] = MUSCLE_HU
    labels = np.zeros(shape, np.uint8)
    for _ in range(rng.integers(6, 10)):
        centre = np.array([rng.uniform(-80, 60), rng.uniform(0, 80), rng.uniform(-90, 10)])
        radius = rng.uniform(12, 25)
        loop = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) < radius
        hu[loop & (body < 0.85)] = GAS_HU if rng.random() < 0.3 else BOWEL_HU
    for name, (centre, axes_mm, value) in ORGAN_LAYOUT.items():
        centre = np.array(centre) + rng.uniform(-10, 10, 3)
        semi = np.array(axes_mm) * rng.uniform(0.85, 1.15, 3)
        organ = ((x - centre[0]) / semi[0]) ** 2 + ((y - centre[1]) / semi[1]) ** 2 + (
            (z - centre[2]) / semi[2]
        ) ** 2 < 1
        organ &= body < 0.85
        hu[organ] = value + rng.normal(0, 8)
        labels[organ] = BTCV_LABELS[name]
    spine = np.hypot(x, y + 85) < 18
    hu[spine] = BONE_HU
    hu[np.hypot(x, y + 85) < 10] = 250.0
    aorta = np.hypot(x + 15, y + 55) < 11
    hu[aorta] = BLOOD_HU
    labels[spine | aorta] = 0
    hu = ndimage.gaussian_filter(hu, 0.6) + rng.normal(0, spec.noise_hu, shape)
    return np.round(hu).astype(np.int16), labels


def write_subject(spec: CTPhantomSpec, index: int, image: Path, label: Path) -> None:
    """Subject ``index`` as two NIfTI files on the spec's grid: CT numbers (HU) and BTCV labels."""
    _, affine = _grid(spec)
    hu, labels = make_subject(spec, index)
    nib.save(nib.Nifti1Image(hu, affine), image)
    nib.save(nib.Nifti1Image(labels, affine), label)


def generate_ct_phantoms(root: Path, spec: CTPhantomSpec) -> Path:
    """Write ``spec.n_subjects`` phantoms under ``root`` as an MSD task folder; reuse a finished folder."""

    def write(folder: Path) -> None:
        (folder / "imagesTr").mkdir()
        (folder / "labelsTr").mkdir()
        training = []
        with progress_bar(total=spec.n_subjects, desc="generating abdominal CT phantoms", unit="subject") as bar:
            for index in range(spec.n_subjects):
                name = f"abdomen_{index:03d}.nii.gz"
                write_subject(spec, index, folder / "imagesTr" / name, folder / "labelsTr" / name)
                training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
                bar.update(1)
        description = {
            "name": "AbdomenPhantom",
            "description": "ssl-medbench abdominal CT phantoms (BTCV label ids)",
            "tensorImageSize": "3D",
            "modality": {"0": "CT"},
            "labels": {"0": "background", **{str(BTCV_LABELS[organ]): organ for organ in ORGAN_LAYOUT}},
            "numTraining": len(training),
            "numTest": 0,
            "training": training,
            "test": [],
        }
        (folder / "dataset.json").write_text(json.dumps(description, indent=2))

    return build_once(root, asdict(spec), write)
