"""Brain-tumour phantoms written in the BraTS 2021 layout, made from the real MNI152 brain template.

Per subject, deterministic from ``(seed, index)``, varying as a BraTS cohort does:

1. anatomy: the template's grey/white-matter maps (CSF = rest of the brain mask) resampled with a per-subject head
   size (up to 2 % per mm of ``deformation_mm`` per axis), pose (up to 1.5 degrees and 1 mm of shift per mm of
   ``deformation_mm``, the residue of the registration BraTS applies) and a random smooth displacement field of
   ``deformation_mm``; ``deformation_mm = 0`` gives the template itself;
2. one to three tumours (multifocal in a quarter of the subjects), anywhere in the white matter of either
   hemisphere at least 10 mm from the brain's surface, 10-32 mm in radius (log-uniform; satellites smaller); each an
   irregular rotated ellipsoid whose edema (label 2) spreads farther along white matter than into grey matter, around
   an off-centre tumour core: a necrotic core (label 1, absent from some tumours) inside an enhancing rim (label 4, at
   least 3 mm thick), as in BraTS; one tumour in eight does not enhance (its core is label 1 only);
3. four contrasts with the usual MR ordering: T1 WM > GM > CSF; T2 the reverse; FLAIR like T2 with
   dark CSF; T1ce like T1 with a bright enhancing rim; edema bright on T2/FLAIR. Each subject's scanner and
   protocol change every tissue's level a little (6 %) and the tumour's appearance more (edema brightness,
   strength of enhancement);
4. in half of the subjects, small unlabelled white-matter hyperintensities (bright on T2/FLAIR, as small-vessel
   disease is in older patients), so that a bright FLAIR voxel alone is not tumour;
5. partial volume at the tumour's borders and smooth intensity heterogeneity inside it;
6. a smooth multiplicative bias field per contrast (its strength varies per subject), tissue texture, Gaussian noise
   (its level varies per subject) and a per-contrast scanner gain; zero outside the brain (BraTS images are
   skull-stripped); stored as int16 NIfTI with the true voxel size in the header.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache, partial
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ssl_medbench.core.errors import ConfigError
from ssl_medbench.core.parallel import map_in_processes
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

#: Version of the anatomy this module draws, recorded in the folder's marker: a folder written by an earlier version
#: (other anatomy, same settings) is regenerated rather than reused. 2: cohorts that vary as real ones do.
ANATOMY_VERSION = 2


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


def _rotation(angles: np.ndarray) -> np.ndarray:
    """Rotation matrix from three angles (radians) about the three axes."""
    matrix = np.eye(3)
    for axis, angle in enumerate(angles):
        i, j = [a for a in range(3) if a != axis]
        turn = np.eye(3)
        turn[i, i] = turn[j, j] = np.cos(angle)
        turn[i, j], turn[j, i] = -np.sin(angle), np.sin(angle)
        matrix = matrix @ turn
    return matrix


def _warp(
    maps: dict[str, np.ndarray], rng: np.random.Generator, deformation_mm: float, voxel_mm: float
) -> dict[str, np.ndarray]:
    """The template resampled with this subject's head size, pose and smooth displacement (see the module docstring)."""
    shape = next(iter(maps.values())).shape
    amplitude_vox = deformation_mm / voxel_mm
    scale = 1.0 + 0.02 * deformation_mm * rng.uniform(-1, 1, 3)
    rotation = _rotation(np.radians(1.5 * deformation_mm) * rng.uniform(-1, 1, 3))
    shift = amplitude_vox * rng.uniform(-1, 1, 3)
    centre = (np.array(shape, np.float32) - 1) / 2
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1) - centre[:, None]
    affine = (rotation / scale[None, :]) @ grid + (centre + shift)[:, None]
    coordinates = [affine[axis].reshape(shape) + amplitude_vox * _coarse_field(rng, shape) for axis in range(3)]
    return {name: ndimage.map_coordinates(m, coordinates, order=1, mode="constant") for name, m in maps.items()}


def _lesion_distance(grid_mm: np.ndarray, centre_mm: np.ndarray, axes: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Ellipsoidal distance in mm from ``centre_mm`` (``axes``: relative semi-axes, ``rotation``: their directions)."""
    offset = np.tensordot(rotation.T, grid_mm - centre_mm[:, None, None, None], axes=1)
    return np.sqrt(sum((offset[a] / axes[a]) ** 2 for a in range(3)))


def _tumour_labels(wm: np.ndarray, brain: np.ndarray, rng: np.random.Generator, voxel_mm: float) -> np.ndarray:
    """BraTS labels (0, 1, 2, 4) of one to three irregular tumours in white matter (see the module docstring)."""
    shape = wm.shape
    depth_mm = ndimage.distance_transform_edt(brain) * voxel_mm
    candidates = np.argwhere((wm > 0.5) & (depth_mm > 10.0))
    if not len(candidates):  # very coarse grids: the deepest white matter
        candidates = np.argwhere(wm >= wm.max() * 0.5)
    grid_mm = np.indices(shape, dtype=np.float32) * voxel_mm
    white = ndimage.gaussian_filter(wm.astype(np.float32), 1.0)
    labels = np.zeros(shape, np.uint8)
    lesions = int(rng.choice([1, 2, 3], p=[0.75, 0.18, 0.07]))
    primary = candidates[rng.integers(len(candidates))] * voxel_mm
    for lesion in range(lesions):
        if lesion == 0:
            centre, edema_r = primary, float(np.exp(rng.uniform(np.log(10.0), np.log(32.0))))
        else:  # a satellite 15-45 mm from the primary tumour, smaller
            near = np.linalg.norm(candidates * voxel_mm - primary, axis=1)
            pool = candidates[(near > 15.0) & (near < 45.0)]
            pool = pool if len(pool) else candidates
            centre, edema_r = pool[rng.integers(len(pool))] * voxel_mm, float(rng.uniform(6.0, 16.0))
        axes = rng.uniform(0.7, 1.3, 3)
        rotation = _rotation(rng.uniform(0, np.pi, 3))
        irregular = 1.0 + rng.uniform(0.15, 0.35) * _smooth_noise(rng, shape, sigma=rng.uniform(3.0, 8.0) / voxel_mm)
        distance = _lesion_distance(grid_mm, centre, axes, rotation) / np.clip(irregular, 0.4, None)
        # edema spreads along white matter (finger-like) and spares the cortex
        lesion = _largest_component(distance * (1.25 - 0.5 * white) < edema_r)
        labels[lesion & (labels == 0)] = 2
        core_r = edema_r * rng.uniform(0.45, 0.8)
        core_centre = centre + rng.uniform(-0.25, 0.25, 3) * edema_r
        core = _lesion_distance(grid_mm, core_centre, axes, rotation) / np.clip(irregular, 0.4, None)
        if rng.random() < 0.125:  # a non-enhancing tumour: its whole core is label 1
            labels[core < core_r] = 1
            continue
        labels[(core < core_r) & (labels != 1)] = 4
        necrosis_r = min(core_r * rng.uniform(0.0, 0.7), core_r - 3.0)  # rims are at least 3 mm thick
        necrosis_centre = core_centre + rng.uniform(-0.15, 0.15, 3) * (core_r - necrosis_r)
        labels[
            _lesion_distance(grid_mm, necrosis_centre, axes, rotation) / np.clip(irregular, 0.4, None) < necrosis_r
        ] = 1
    labels[~brain] = 0
    return labels


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of ``mask`` (a tumour is one mass, not scattered specks)."""
    components, count = ndimage.label(mask)
    if count <= 1:
        return mask
    return components == np.argmax(np.bincount(components.ravel())[1:]) + 1


def _hyperintensities(wm: np.ndarray, rng: np.random.Generator, voxel_mm: float) -> np.ndarray:
    """Fractional map (0..1) of a few small white-matter hyperintensities, or zeros (half of the subjects)."""
    if rng.random() < 0.5:
        return np.zeros(wm.shape, np.float32)
    candidates = np.argwhere(wm > 0.8)
    grid_mm = np.indices(wm.shape, dtype=np.float32) * voxel_mm
    spots = np.zeros(wm.shape, bool)
    for _ in range(rng.integers(2, 9)):
        centre = candidates[rng.integers(len(candidates))] * voxel_mm
        spots |= np.sqrt(((grid_mm - centre[:, None, None, None]) ** 2).sum(0)) < rng.uniform(2.0, 5.0)
    return np.clip(ndimage.gaussian_filter(spots.astype(np.float32), 1.0 / voxel_mm), 0, 1) * (wm > 0.3)


def make_subject(
    template: dict[str, np.ndarray], spec: PhantomSpec, index: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Images (int16, one per modality) and BraTS labels for subject ``index``."""
    rng = np.random.default_rng([spec.seed, index])
    maps = _warp(template, rng, spec.deformation_mm, spec.voxel_size_mm)
    brain = (maps["gm"] + maps["wm"] + maps["csf"]) > 0.5
    labels = _tumour_labels(maps["wm"], brain, rng, spec.voxel_size_mm)
    hyperintense = _hyperintensities(maps["wm"], rng, spec.voxel_size_mm) * (labels == 0)
    # partial volume at the tumour's borders: tumour tissue fractions blurred by ~1 mm, healthy tissue fills the rest
    blur = spec.partial_volume_mm / spec.voxel_size_mm
    fractions = {
        name: np.clip(ndimage.gaussian_filter((labels == value).astype(np.float32), blur), 0.0, 1.0)
        for name, value in (("edema", 2), ("enhancing", 4), ("necrosis", 1))
    }
    healthy = np.clip(1.0 - sum(fractions.values()), 0.0, 1.0)
    for name in ("csf", "gm", "wm"):
        fractions[name] = maps[name] * healthy
    fractions["wmh"] = fractions["wm"] * hyperintense
    fractions["wm"] = fractions["wm"] - fractions["wmh"]
    shape = labels.shape
    heterogeneity = 1.0 + spec.tumour_heterogeneity * _smooth_noise(rng, shape, sigma=2.0)
    # this subject's scanner and protocol: tissue levels, tumour appearance, bias strength, noise level
    tissue_jitter = {t: np.exp(rng.normal(0, 0.06, len(MODALITIES))) for t in TISSUES}
    edema_strength, enhancement = rng.uniform(0.75, 1.1), rng.uniform(0.85, 1.2)
    bias_strength, noise = rng.uniform(0.05, 0.25), spec.noise * rng.uniform(0.6, 1.6)
    images = {}
    for number, modality in enumerate(MODALITIES):
        levels = {t: level * tissue_jitter[t][number] for t, level in zip(TISSUES, CONTRAST[modality])}
        # edema and enhancement are contrasts against white matter: scale the difference
        levels["edema"] = levels["wm"] + (levels["edema"] - levels["wm"]) * edema_strength
        levels["enhancing"] = levels["wm"] + (levels["enhancing"] - levels["wm"]) * enhancement
        levels["wmh"] = levels["wm"] + (levels["edema"] - levels["wm"]) * 0.8
        healthy_signal = sum(fractions[t] * levels[t] for t in ("csf", "gm", "wm", "wmh"))
        tumour_signal = sum(fractions[t] * levels[t] for t in ("edema", "enhancing", "necrosis")) * heterogeneity
        texture = 1.0 + 0.05 * _smooth_noise(rng, shape, sigma=1.0)
        bias = np.exp(bias_strength * _coarse_field(rng, shape, points=4))
        image = (healthy_signal + tumour_signal) * texture * bias + noise * rng.standard_normal(shape).astype(
            np.float32
        )
        gain = rng.uniform(0.7, 1.4)
        image = np.where(brain, np.clip(image * gain, 0.01, None), 0.0)
        images[modality] = np.round(image * 1000).astype(np.int16)
    return images, labels


def generate_brats_phantoms(root: Path, spec: PhantomSpec) -> Path:
    """Write ``spec.n_subjects`` subjects under ``root`` in the BraTS 2021 layout; reuse a finished folder.

    The folder is built under a temporary name and renamed when complete, so an interrupted run never
    leaves a half-written dataset that a later run would take for finished. Subjects are generated in the
    preparation workers (:mod:`ssl_medbench.core.parallel`), each from its own seed: the same bytes for any number.
    """

    def write(folder: Path) -> None:
        _tissue_maps(spec.voxel_size_mm)  # loaded once, before the workers fork
        with progress_bar(total=spec.n_subjects, desc="generating BraTS phantoms", unit="subject") as bar:
            map_in_processes(partial(_write_subject, folder, spec), range(spec.n_subjects), bar)

    return build_once(root, {**asdict(spec), "anatomy": ANATOMY_VERSION}, write)


@cache
def _tissue_maps(voxel_size_mm: float) -> dict[str, np.ndarray]:
    return load_tissue_maps(voxel_size_mm)


def _write_subject(folder: Path, spec: PhantomSpec, index: int) -> None:
    """Subject ``index``'s four images and label map as ``folder/<ID>/<ID>_<kind>.nii.gz``."""
    subject = f"BraTS2021_{index:05d}"
    (folder / subject).mkdir()
    affine = np.diag([spec.voxel_size_mm] * 3 + [1.0])
    images, labels = make_subject(_tissue_maps(spec.voxel_size_mm), spec, index)
    for modality, image in images.items():
        nib.save(nib.Nifti1Image(image, affine), folder / subject / f"{subject}_{modality}.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), folder / subject / f"{subject}_seg.nii.gz")
