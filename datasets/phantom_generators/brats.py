"""Brain-tumour phantoms written in the BraTS 2021 layout, made from the real MNI152 brain template.

Per subject, deterministic from ``(seed, index)``:

1. the template's grey/white-matter maps (CSF = rest of the brain mask) warped by a random smooth
   displacement field (a few mm);
2. a tumour grown from a noise-perturbed radius field around a white-matter centre: necrotic core
   (label 1) inside an enhancing rim (label 4) inside edema (label 2), as in BraTS;
3. four contrasts with the usual MR ordering: T1 WM > GM > CSF; T2 the reverse; FLAIR like T2 with
   dark CSF; T1ce like T1 with a bright enhancing rim; edema bright on T2/FLAIR;
4. partial volume at the tumour's borders and smooth intensity heterogeneity inside it;
5. a smooth multiplicative bias field per contrast, tissue texture and Gaussian noise; zero outside the
   brain (BraTS images are skull-stripped); stored as int16 NIfTI with the true voxel size in the header.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ssl_medbench.core.errors import ConfigError
from ssl_medbench.core.progress import progress_bar
from ssl_medbench.datasets.phantom_generators.folder import build_once
from ssl_medbench.datasets.phantom_generators.mni_template import load_tissue_maps

MODALITIES = ("t1", "t1ce", "t2", "flair")
TISSUES = ("csf", "gm", "wm", "edema", "enhancing", "necrosis")
#: Mean intensity of each tissue (columns as TISSUES) per contrast, arbitrary units.
CONTRAST = {
    "t1": (0.30, 0.60, 0.85, 0.50, 0.55, 0.25),
    "t1ce": (0.30, 0.60, 0.85, 0.50, 1.25, 0.25),
    "t2": (1.00, 0.65, 0.45, 0.85, 0.60, 0.95),
    "flair": (0.15, 0.60, 0.50, 0.95, 0.70, 0.40),
}


@dataclass(frozen=True)
class PhantomSpec:
    n_subjects: int = 8
    voxel_size_mm: float = 2.0
    seed: int = 0
    deformation_mm: float = 3.0
    #: Standard deviation of the Gaussian noise, relative to white matter on T1 (0.85).
    noise: float = 0.05
    #: Width (Gaussian sigma, mm) of the partial-volume blur of the tumour's tissue borders.
    partial_volume_mm: float = 1.0
    #: Relative smooth intensity variation inside the tumour.
    tumour_heterogeneity: float = 0.15

    @classmethod
    def example(cls) -> PhantomSpec:
        """Six subjects at 8 mm (25 x 29 x 24 voxels), written in well under a second."""
        return cls(n_subjects=6, voxel_size_mm=8.0)

    def check(self, dataset: str) -> None:
        """ConfigError naming ``dataset`` for settings the generator cannot honour."""
        if self.n_subjects < 2:
            raise ConfigError(f"{dataset}.n_subjects must be >= 2, got {self.n_subjects}")

    def generate(self, root: Path) -> Path:
        return generate_brats_phantoms(root, self)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return field / (field.std() + 1e-8)


def _coarse_field(rng: np.random.Generator, shape: tuple[int, ...], points: int = 5) -> np.ndarray:
    """A very smooth random field with unit std: ``points``^3 control values, cubic up to 1/4 size, then linear."""
    coarse = rng.standard_normal((points,) * 3)
    quarter = ndimage.zoom(coarse, [max(s // 4, points) / points for s in shape], order=3)
    field = ndimage.zoom(
        quarter, [s / q for s, q in zip(shape, quarter.shape)], order=1, grid_mode=True, mode="nearest"
    )
    return (field / (field.std() + 1e-8)).astype(np.float32)


def _warp(maps: dict[str, np.ndarray], rng: np.random.Generator, amplitude_vox: float) -> dict[str, np.ndarray]:
    shape = next(iter(maps.values())).shape
    grid = np.indices(shape, dtype=np.float32)
    coordinates = [grid[axis] + amplitude_vox * _coarse_field(rng, shape) for axis in range(3)]
    return {name: ndimage.map_coordinates(m, coordinates, order=1, mode="constant") for name, m in maps.items()}


def _tumour_labels(wm: np.ndarray, brain: np.ndarray, rng: np.random.Generator, voxel_mm: float) -> np.ndarray:
    """BraTS labels (0, 1, 2, 4) of a tumour centred in white matter, radii in mm drawn per subject."""
    shape = wm.shape
    core = np.zeros(shape, bool)
    core[tuple(slice(s // 4, 3 * s // 4) for s in shape)] = True
    candidates = np.argwhere((wm > 0.6) & core)
    centre = candidates[rng.integers(len(candidates))]
    edema_r = rng.uniform(14.0, 26.0)
    rim_r = edema_r * rng.uniform(0.45, 0.65)
    necrosis_r = rim_r * rng.uniform(0.35, 0.65)
    grid = np.indices(shape, dtype=np.float32)
    distance = np.sqrt(sum(((grid[a] - centre[a]) * voxel_mm) ** 2 for a in range(3)))
    radius_scale = 1.0 + 0.22 * _smooth_noise(rng, shape, sigma=6.0 / voxel_mm)
    normalised = distance / np.clip(radius_scale, 0.5, None)
    labels = np.zeros(shape, np.uint8)
    labels[normalised < edema_r] = 2
    labels[normalised < rim_r] = 4
    labels[normalised < necrosis_r] = 1
    labels[~brain] = 0
    return labels


def make_subject(
    template: dict[str, np.ndarray], spec: PhantomSpec, index: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Images (int16, one per modality) and BraTS labels for subject ``index``."""
    rng = np.random.default_rng([spec.seed, index])
    maps = _warp(template, rng, spec.deformation_mm / spec.voxel_size_mm)
    brain = (maps["gm"] + maps["wm"] + maps["csf"]) > 0.5
    labels = _tumour_labels(maps["wm"], brain, rng, spec.voxel_size_mm)
    # partial volume at the tumour's borders: tumour tissue fractions blurred by ~1 mm, healthy tissue fills the rest
    blur = spec.partial_volume_mm / spec.voxel_size_mm
    fractions = {
        name: np.clip(ndimage.gaussian_filter((labels == value).astype(np.float32), blur), 0.0, 1.0)
        for name, value in (("edema", 2), ("enhancing", 4), ("necrosis", 1))
    }
    healthy = np.clip(1.0 - sum(fractions.values()), 0.0, 1.0)
    for name in ("csf", "gm", "wm"):
        fractions[name] = maps[name] * healthy
    shape = labels.shape
    heterogeneity = 1.0 + spec.tumour_heterogeneity * _smooth_noise(rng, shape, sigma=2.0)
    images = {}
    for modality in MODALITIES:
        levels = dict(zip(TISSUES, CONTRAST[modality]))
        healthy_signal = sum(fractions[t] * levels[t] for t in ("csf", "gm", "wm"))
        tumour_signal = sum(fractions[t] * levels[t] for t in ("edema", "enhancing", "necrosis")) * heterogeneity
        texture = 1.0 + 0.05 * _smooth_noise(rng, shape, sigma=1.0)
        bias = np.exp(0.12 * _coarse_field(rng, shape, points=4))
        image = (healthy_signal + tumour_signal) * texture * bias + spec.noise * rng.standard_normal(shape).astype(
            np.float32
        )
        image = np.where(brain, np.clip(image, 0.01, None), 0.0)
        images[modality] = np.round(image * 1000).astype(np.int16)
    return images, labels


def generate_brats_phantoms(root: Path, spec: PhantomSpec) -> Path:
    """Write ``spec.n_subjects`` subjects under ``root`` in the BraTS 2021 layout; reuse a finished folder.

    The folder is built under a temporary name and renamed when complete, so an interrupted run never
    leaves a half-written dataset that a later run would take for finished.
    """
    affine = np.diag([spec.voxel_size_mm] * 3 + [1.0])

    def write(folder: Path) -> None:
        template = load_tissue_maps(spec.voxel_size_mm)
        with progress_bar(total=spec.n_subjects, desc="generating BraTS phantoms", unit="subject") as bar:
            for index in range(spec.n_subjects):
                subject = f"BraTS2021_{index:05d}"
                (folder / subject).mkdir()
                images, labels = make_subject(template, spec, index)
                for modality, image in images.items():
                    nib.save(nib.Nifti1Image(image, affine), folder / subject / f"{subject}_{modality}.nii.gz")
                nib.save(nib.Nifti1Image(labels, affine), folder / subject / f"{subject}_seg.nii.gz")
                bar.update(1)

    return build_once(root, asdict(spec), write)
