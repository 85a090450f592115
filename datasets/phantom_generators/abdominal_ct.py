"""Contrast-enhanced abdominal CT phantoms in Hounsfield units, written in the Medical Segmentation Decathlon layout.

World coordinates are RAS+ in mm (x towards the patient's right, y anterior, z superior), the volume
centred on the abdomen. Each subject has a body outline with subcutaneous fat and a muscle wall,
visceral fat with bowel-like loops (some holding gas), the spine and aorta, and five organs as
deformed, rotated ellipsoids with BTCV label ids in anatomically plausible places: the liver in the right
upper quadrant, the spleen left and posterior, both kidneys posterior beside the spine with the
right one lower than the left, the pancreas lying across the midline in front of them, its tail rising
towards the spleen.

Subjects differ as a real cohort does, so that no fixed box fits them all (an image-blind predictor that outputs the
mean training box per organ is several centimetres off) while every image still shows where its organs are:

* placement in the scanner: lateral centring and table height (sd 18 mm each, at most 40 mm), where the scan range starts
  (the anatomy shifts by -40 to +15 mm along z) and a slight roll about the long axis (sd 5 degrees);
* body habitus: the whole anatomy is scaled by 0.85-1.18 (small to large adults), and the subcutaneous fat layer
  varies independently (thin to obese);
* breathing: the respiratory phase moves the liver and spleen by up to 15 mm along z, the kidneys and pancreas by
  half as much, while the spine stays put;
* the organs themselves: each moves on its own (sd 10 mm per axis), is scaled as a whole (liver 0.8-1.35,
  spleen 0.7-1.5, others 0.8-1.25) and per axis (0.85-1.15) and turns by up to 20 degrees in the axial plane.

One smooth random deformation field then bends the whole anatomy. Portal-venous HU values (each organ's
enhancement varies per subject), Gaussian noise and a slight blur (partial volume); anisotropic voxels.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ssl_medbench.core.errors import ConfigError
from ssl_medbench.core.parallel import map_in_processes
from ssl_medbench.core.progress import progress_bar
from ssl_medbench.datasets.abdominal_ct import BTCV_LABELS
from ssl_medbench.datasets.phantom_generators.folder import build_once

#: Organ -> (centre x, y, z in mm, semi-axes in mm, HU), before per-subject variation.
ORGAN_LAYOUT = {
    "liver": ((65.0, 10.0, 45.0), (85.0, 75.0, 65.0), 110.0),
    "spleen": ((-95.0, -35.0, 50.0), (30.0, 45.0, 50.0), 120.0),
    "right_kidney": ((72.0, -55.0, -35.0), (28.0, 30.0, 50.0), 175.0),
    "left_kidney": ((-72.0, -55.0, -5.0), (28.0, 30.0, 50.0), 175.0),
    "pancreas": ((-5.0, 5.0, 10.0), (75.0, 16.0, 16.0), 100.0),
}
#: Range of each organ's overall size factor between subjects (others: 0.8-1.25): livers and spleens vary most.
ORGAN_SIZE = {"liver": (0.8, 1.35), "spleen": (0.7, 1.5)}
FAT_HU, MUSCLE_HU, BOWEL_HU, GAS_HU, BONE_HU, BLOOD_HU, AIR_HU = -100.0, 55.0, 35.0, -700.0, 600.0, 190.0, -1000.0

#: Version of the anatomy this module draws, recorded in the folder's marker: a folder written by an earlier version
#: (other anatomy, same settings) is regenerated rather than reused. 2: cohorts that vary as real ones do.
ANATOMY_VERSION = 2


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
    # placement in the scanner and body habitus: scanner coordinates -> the subject's anatomical coordinates
    shift = np.array([*np.clip(rng.normal(0, 18, 2), -40, 40), rng.uniform(-40, 15)])
    roll = np.radians(np.clip(rng.normal(0, 5), -12, 12))
    habitus = rng.uniform(0.85, 1.18)
    x, y, z = x - shift[0], y - shift[1], z - shift[2]
    x, y = (np.cos(roll) * x + np.sin(roll) * y) / habitus, (-np.sin(roll) * x + np.cos(roll) * y) / habitus
    z = z / habitus
    breathing = rng.uniform(-15, 15)

    fat = rng.uniform(0.95, 1.2)  # subcutaneous fat: the outline grows, the muscle wall stays with the viscera
    body_a, body_b = 165 * fat * rng.uniform(0.95, 1.05), 115 * fat * rng.uniform(0.95, 1.08)
    body = np.hypot(x / body_a, y / body_b)
    wall = np.hypot(x / (165 * 0.9), y / (115 * 0.9))
    hu = np.full(shape, AIR_HU, np.float32)
    hu[body < 1] = FAT_HU
    hu[(wall < 1.03) & (wall > 0.96) & (body < 1)] = MUSCLE_HU
    inside = (wall < 0.95) & (body < 1)
    labels = np.zeros(shape, np.uint8)
    for _ in range(rng.integers(6, 10)):
        centre = np.array([rng.uniform(-80, 60), rng.uniform(0, 80), rng.uniform(-90, 10)])
        radius = rng.uniform(12, 25)
        loop = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) < radius
        hu[loop & inside] = GAS_HU if rng.random() < 0.3 else BOWEL_HU
    left_kidney_z = ORGAN_LAYOUT["left_kidney"][0][2] + rng.normal(0, 10)
    for name, (centre, axes_mm, value) in ORGAN_LAYOUT.items():
        centre = np.array(centre) + np.clip(rng.normal(0, 10, 3), -25, 25)
        if name == "right_kidney":  # lower than the left one, by 1-4 cm
            centre[2] = left_kidney_z - rng.uniform(10, 40)
        elif name == "left_kidney":
            centre[2] = left_kidney_z
        centre[2] += breathing * (1.0 if name in ("liver", "spleen") else 0.5)
        semi = np.array(axes_mm) * rng.uniform(*ORGAN_SIZE.get(name, (0.8, 1.25))) * rng.uniform(0.85, 1.15, 3)
        turn = rng.uniform(-1, 1) * np.radians(20)
        dx, dy = x - centre[0], y - centre[1]
        u, v = np.cos(turn) * dx + np.sin(turn) * dy, -np.sin(turn) * dx + np.cos(turn) * dy
        w = z - centre[2]
        if name == "pancreas":  # the tail rises towards the spleen
            tilt = -np.radians(rng.uniform(10, 30))
            u, w = np.cos(tilt) * u + np.sin(tilt) * w, -np.sin(tilt) * u + np.cos(tilt) * w
        organ = (u / semi[0]) ** 2 + (v / semi[1]) ** 2 + (w / semi[2]) ** 2 < 1
        organ &= inside
        hu[organ] = value + rng.normal(0, 12)
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


def _write_msd_subject(folder: Path, spec: CTPhantomSpec, numbered: tuple[int, str]) -> None:
    index, name = numbered
    write_subject(spec, index, folder / "imagesTr" / name, folder / "labelsTr" / name)


def generate_ct_phantoms(root: Path, spec: CTPhantomSpec) -> Path:
    """Write ``spec.n_subjects`` phantoms under ``root`` as an MSD task folder; reuse a finished folder."""

    def write(folder: Path) -> None:
        (folder / "imagesTr").mkdir()
        (folder / "labelsTr").mkdir()
        names = [f"abdomen_{index:03d}.nii.gz" for index in range(spec.n_subjects)]
        with progress_bar(total=spec.n_subjects, desc="generating abdominal CT phantoms", unit="subject") as bar:
            map_in_processes(partial(_write_msd_subject, folder, spec), list(enumerate(names)), bar)
        training = [{"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"} for name in names]
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

    return build_once(root, {**asdict(spec), "anatomy": ANATOMY_VERSION}, write)
