"""Fetal ultrasound standard-plane phantoms written in the FETAL_PLANES_DB layout (PNG images + the semicolon CSV).

Each image is formed the way a B-mode image is: an echogenicity map of class-specific anatomy is
sampled on the probe's polar (depth x beam angle) grid, bright bone casts an acoustic shadow down
its beams, depth gain (time-gain compensation) and Rayleigh-distributed multiplicative speckle are
applied, the envelope is log-compressed, and the polar image is scan-converted into a fan-shaped
sector on a black background. Anatomy, with random pose, scale and position per image:

* Fetal brain: bright elliptical skull (a weak shadow), hypoechoic brain, bright midline; per brain plane two dark
  thalami (trans-thalamic), a dumbbell cerebellum with a dark cisterna magna (trans-cerebellum) or
  dark lateral ventricles with bright choroid plexus (trans-ventricular).
* Fetal abdomen: round outline, dark stomach bubble, bright spine with shadow.
* Fetal femur: bright bar with an acoustic shadow.
* Fetal thorax: ring with bright rib arcs, a heart with four dark chambers and a bright septum cross.
* Maternal cervix: shallow elongated tissue with a bright canal line in a dark mucus band.
* Other: a few random blobs and a bright segment.

Images of one patient share what a real examination shares: the ultrasound machine (each model has its own
speckle grain, sector width and dynamic range) and operator, the fetus's size (gestational age scales the anatomy by
0.75-1.2) and the mother's habitus and the operator's settings (base echogenicity, depth attenuation, overall gain,
log offset); each image varies a little around its patient's values. Patients therefore differ more than images of
one patient do, so a patient-level split matters and more training patients cover more of the cohort. Gain, base
echogenicity and depth gain still vary widely across the cohort, so mean brightness alone does not give the class
away. Planes are drawn with the class shares of FETAL_PLANES_DB (imbalanced: "Other" is a
third of the images, the abdomen 6 %). Image sizes vary, and a third of the PNGs are written as RGB,
so loaders must resize and convert. ``Train`` marks a patient-disjoint split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ssl_medbench.core.errors import ConfigError
from ssl_medbench.core.parallel import map_in_processes
from ssl_medbench.core.progress import progress_bar
from ssl_medbench.datasets.fetal_planes import BRAIN_PLANES, COLUMNS, CSV_NAME, IMAGES_FOLDER, PLANES
from ssl_medbench.datasets.phantom_generators.folder import build_once

OPERATORS = ("Op. 1", "Op. 2", "Op. 3")
#: Share of each plane among FETAL_PLANES_DB's 12,400 images (Burgos-Artizzu et al. 2020), in :data:`PLANES` order:
#: abdomen 711, brain 3092, femur 1040, thorax 1718, cervix 1626, other 4213.
PLANE_SHARES = np.array([711, 3092, 1040, 1718, 1626, 4213]) / 12400
MACHINES = ("Voluson E6", "Voluson S10", "Aloka")
#: Per machine: ranges of its speckle grain (blur sigma in pixels, along depth and across beams), sector half-angle
#: (degrees) and log-compression dynamic range; a patient's examination draws one value from each.
MACHINE_LOOK = {
    "Voluson E6": {"speckle": ((0.6, 0.9), (1.0, 1.5)), "half_angle": (36, 42), "dynamic_range": (15, 35)},
    "Voluson S10": {"speckle": ((0.4, 0.7), (0.7, 1.1)), "half_angle": (40, 46), "dynamic_range": (30, 60)},
    "Aloka": {"speckle": ((0.9, 1.3), (1.4, 2.0)), "half_angle": (32, 38), "dynamic_range": (10, 20)},
}

#: Version of the anatomy this module draws, recorded in the folder's marker: a folder written by an earlier version
#: (other anatomy, same settings) is regenerated rather than reused. 2: cohorts that vary as real ones do.
ANATOMY_VERSION = 2


@dataclass(frozen=True)
class FetalPhantomSpec:
    n_patients: int = 12
    images_per_patient: int = 6
    #: Share of patients marked Train = 0.
    test_fraction: float = 0.25
    #: Nominal image height in pixels (each image varies by up to 15 %; width is 1.25 x height).
    height: int = 128
    seed: int = 0

    @classmethod
    def example(cls) -> FetalPhantomSpec:
        """Six patients (two of them test patients) with two images about 32 pixels high each."""
        return cls(n_patients=6, images_per_patient=2, height=32)

    def check(self, dataset: str) -> None:
        """ConfigError naming ``dataset`` for settings the generator cannot honour."""
        if self.n_patients < 2 or self.images_per_patient < 1:
            raise ConfigError(f"{dataset} needs n_patients >= 2 and images_per_patient >= 1")

    def generate(self, root: Path) -> Path:
        return generate_fetal_phantoms(root, self)


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, a: float, b: float) -> np.ndarray:
    """Normalised radius: < 1 inside the ellipse centred (cu, cv) with semi-axes a (along u) and b (along v)."""
    return np.sqrt(((u - cu) / a) ** 2 + ((v - cv) / b) ** 2)


#: Share of the echo that passes below bone, per plane: thin skull and ribs let some through, femur and spine little.
SHADOW_TRANSMISSION = {"Fetal brain": 0.7, "Fetal thorax": 0.5, "Fetal abdomen": 0.15, "Fetal femur": 0.15}


def _anatomy(
    plane: str, brain_plane: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator, tissue: float
) -> tuple[np.ndarray, np.ndarray]:
    """Echogenicity (0..1) and bone mask on local coordinates (u, v) in units of the structure's radius."""
    echo = np.full(u.shape, tissue, np.float32)
    bone = np.zeros(u.shape, bool)
    if plane == "Fetal brain":
        radius = _ellipse(u, v, 0, 0, 1.0, 0.8)
        echo[radius < 1] = 0.45 * tissue
        bone = np.abs(radius - 1) < 0.06
        echo[(np.abs(v) < 0.025) & (radius < 0.95)] = 0.8
        if brain_plane == "Trans-thalamic":
            for side in (-1, 1):
                echo[_ellipse(u, v, 0.1, side * 0.17, 0.17, 0.1) < 1] = 0.08
        elif brain_plane == "Trans-cerebellum":
            for side in (-1, 1):
                echo[_ellipse(u, v, -0.5, side * 0.14, 0.14, 0.14) < 1] = 0.6
            echo[_ellipse(u, v, -0.74, 0, 0.1, 0.22) < 1] = 0.05
        else:
            for side in (-1, 1):
                band = (np.abs(v - side * 0.26) < 0.06) & (np.abs(u) < 0.55)
                echo[band] = 0.06
                echo[band & (np.abs(u + 0.2) < 0.15)] = 0.75
    elif plane == "Fetal abdomen":
        radius = _ellipse(u, v, 0, 0, 1.0, 0.95)
        echo[radius < 1] = 0.8 * tissue + 0.05
        echo[np.abs(radius - 1) < 0.05] = 0.7
        echo[_ellipse(u, v, 0.3, 0.35, 0.28, 0.22) < 1] = 0.04
        bone = _ellipse(u, v, -0.72, 0, 0.13, 0.13) < 1
    elif plane == "Fetal femur":
        bone = (np.abs(v) < 0.07) & (np.abs(u) < 1.1)
    elif plane == "Fetal thorax":
        radius = _ellipse(u, v, 0, 0, 1.0, 1.0)
        echo[radius < 1] = 0.9 * tissue + 0.1
        angles = np.arctan2(v, u)
        bone = (np.abs(radius - 1) < 0.06) & (np.cos(6 * angles) > 0.3)
        heart = _ellipse(u, v, 0.2, 0.15, 0.45, 0.4)
        echo[heart < 1] = 0.45
        du, dv = u - 0.2, v - 0.15
        for su in (-1, 1):
            for sv in (-1, 1):
                echo[_ellipse(du, dv, su * 0.18, sv * 0.16, 0.14, 0.12) < 1] = 0.05
    elif plane == "Maternal cervix":
        body = _ellipse(u, v, 0, 0, 1.3, 0.45)
        echo[body < 1] = 1.2 * tissue + 0.1
        echo[(body < 0.9) & (np.abs(v) < 0.09)] = 0.1
        echo[(body < 0.85) & (np.abs(v) < 0.025)] = 0.9
    else:
        for _ in range(rng.integers(2, 5)):
            cu, cv = rng.uniform(-1, 1, 2)
            echo[_ellipse(u, v, cu, cv, *rng.uniform(0.1, 0.4, 2)) < 1] = rng.uniform(0.05, 0.8)
        angle = rng.uniform(0, np.pi)
        along = u * np.cos(angle) + v * np.sin(angle)
        across = -u * np.sin(angle) + v * np.cos(angle)
        echo[(np.abs(across) < 0.03) & (np.abs(along) < 0.5)] = 0.9
    return echo, bone


def _add_distractors(
    echo: np.ndarray, bone: np.ndarray, y: np.ndarray, x: np.ndarray, height: int, rng: np.random.Generator
) -> None:
    """Class-independent clutter in every image: dark and bright blobs, and sometimes a shadow-casting bright fleck
    (maternal tissue, limbs, other fetal parts), so that histograms overlap between classes."""
    for _ in range(rng.integers(1, 4)):
        centre_y, centre_x = rng.uniform(0.2, 0.95) * height, rng.uniform(0.2, 1.05) * height
        radius = rng.uniform(0.04, 0.15) * height
        echo[np.hypot(y - centre_y, x - centre_x) < radius] = rng.choice(
            [rng.uniform(0.02, 0.1), rng.uniform(0.6, 0.9)]
        )
    if rng.random() < 0.5:
        centre_y, centre_x = rng.uniform(0.15, 0.6) * height, rng.uniform(0.3, 0.95) * height
        bone |= np.hypot((y - centre_y) / 0.02, (x - centre_x) / rng.uniform(0.03, 0.12)) < height


@dataclass(frozen=True)
class Examination:
    """What the images of one patient share: the machine's look, the fetus's size, the mother's habitus, the settings."""

    speckle: tuple[float, float]
    half_angle_deg: float
    dynamic_range: float
    #: Scale of the fetal anatomy (gestational age).
    size: float
    #: Base echogenicity of soft tissue.
    tissue: float
    #: Depth attenuation left after time-gain compensation, per image height.
    attenuation: float
    gain: float
    offset: float


def examination(machine: str, rng: np.random.Generator) -> Examination:
    """One patient's examination on ``machine``."""
    look = MACHINE_LOOK[machine]
    return Examination(
        speckle=tuple(float(rng.uniform(*bounds)) for bounds in look["speckle"]),
        half_angle_deg=float(rng.uniform(*look["half_angle"])),
        dynamic_range=float(rng.uniform(*look["dynamic_range"])),
        size=float(rng.uniform(0.75, 1.2)),
        tissue=float(rng.uniform(0.2, 0.55)),
        attenuation=float(rng.uniform(0.3, 1.8)),
        gain=float(rng.uniform(0.5, 1.6)),
        offset=float(rng.uniform(-0.1, 0.1)),
    )


def make_image(
    plane: str,
    brain_plane: str,
    spec: FetalPhantomSpec,
    rng: np.random.Generator,
    exam: Examination | None = None,
) -> np.ndarray:
    """One uint8 B-mode image (height, width) of ``plane``, taken in ``exam`` (default: an examination of its own)."""
    exam = exam if exam is not None else examination(str(rng.choice(MACHINES)), rng)
    height = int(spec.height * rng.uniform(0.85, 1.15))
    width = int(1.25 * height)
    half_angle = np.radians(exam.half_angle_deg + rng.uniform(-1.5, 1.5))
    depths = np.linspace(0, height - 1, height)
    angles = np.linspace(-half_angle, half_angle, width)
    r, theta = np.meshgrid(depths, angles, indexing="ij")  # polar grid: rows depth, columns beam angle
    y, x = r * np.cos(theta), width / 2 + r * np.sin(theta)
    centre_y = height * rng.uniform(0.3, 0.45) if plane == "Maternal cervix" else height * rng.uniform(0.45, 0.65)
    centre_x = width / 2 + width * rng.uniform(-0.1, 0.1)
    scale = height * 0.28 * exam.size * rng.uniform(0.9, 1.1)
    pose = rng.uniform(0, 2 * np.pi)
    du, dv = (y - centre_y) / scale, (x - centre_x) / scale
    u = du * np.cos(pose) + dv * np.sin(pose)
    v = -du * np.sin(pose) + dv * np.cos(pose)
    tissue = exam.tissue * rng.uniform(0.9, 1.1)
    echo, bone = _anatomy(plane, brain_plane, u, v, rng, tissue)
    _add_distractors(echo, bone, y, x, height, rng)
    echo = echo * (1 + 0.25 * ndimage.gaussian_filter(rng.standard_normal(echo.shape), 6) * 4)
    echo[bone] = 1.0
    shadow = np.maximum.accumulate(bone, axis=0) & ~bone
    echo = np.where(shadow, SHADOW_TRANSMISSION.get(plane, 0.15) * echo, echo)
    attenuation = exam.attenuation * rng.uniform(0.9, 1.1)
    gain = np.exp(-attenuation * depths / height)[:, None] * exam.gain * rng.uniform(0.9, 1.1)
    speckle = rng.rayleigh(1.0, echo.shape)
    envelope = ndimage.gaussian_filter(np.clip(echo, 0.01, None) * gain * speckle, exam.speckle)
    dynamic_range = exam.dynamic_range * rng.uniform(0.9, 1.1)
    compressed = (
        np.log1p(dynamic_range * envelope) / np.log1p(dynamic_range * 1.5) + exam.offset + rng.uniform(-0.02, 0.02)
    )
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    radius = np.hypot(rows, cols - width / 2)
    angle = np.arctan2(cols - width / 2, rows)
    inside = (radius > 0.04 * height) & (radius < height - 1) & (np.abs(angle) < half_angle)
    polar_row = radius
    polar_col = (angle + half_angle) / (2 * half_angle) * (width - 1)
    image = ndimage.map_coordinates(compressed, [polar_row, polar_col], order=1, mode="constant")
    return np.where(inside, np.clip(image * 255, 1, 255), 0).astype(np.uint8)


def _plan(spec: FetalPhantomSpec) -> list[dict[str, str | int]]:
    """One row per image: name, patient, plane, brain plane, operator, machine, train flag."""
    rng = np.random.default_rng([spec.seed, 0])
    n_test = min(max(1, round(spec.test_fraction * spec.n_patients)), spec.n_patients - 1)
    test = set(rng.permutation(spec.n_patients)[:n_test].tolist())
    rows = []
    for patient in range(spec.n_patients):
        operator, machine = str(rng.choice(OPERATORS)), str(rng.choice(MACHINES))  # one examination per patient
        planes = rng.choice(PLANES, size=spec.images_per_patient, p=PLANE_SHARES)
        for index, plane in enumerate(planes.tolist(), start=1):
            brain = str(rng.choice(BRAIN_PLANES)) if plane == "Fetal brain" else "Not A Brain"
            rows.append(
                {
                    "Image_name": f"Patient{patient + 1:05d}_Plane{PLANES.index(plane) + 1}_{index}_of_{spec.images_per_patient}",
                    "Patient_num": patient + 1,
                    "Plane": plane,
                    "Brain_plane": brain,
                    "Operator": operator,
                    "US_Machine": machine,
                    "Train": 0 if patient in test else 1,
                }
            )
    return rows


def _write_patient(folder: Path, spec: FetalPhantomSpec, images: list[tuple[int, dict]]) -> None:
    """One patient's images (``(number, row)`` of :func:`_plan`) as PNG files, every third one saved as RGB."""
    patient = int(images[0][1]["Patient_num"])
    exam = examination(str(images[0][1]["US_Machine"]), np.random.default_rng([spec.seed, 2, patient]))
    for number, row in images:
        rng = np.random.default_rng([spec.seed, 1, number])
        image = Image.fromarray(make_image(str(row["Plane"]), str(row["Brain_plane"]), spec, rng, exam), mode="L")
        (image.convert("RGB") if number % 3 == 0 else image).save(folder / IMAGES_FOLDER / f"{row['Image_name']}.png")


def generate_fetal_phantoms(root: Path, spec: FetalPhantomSpec) -> Path:
    """Write the phantom dataset under ``root`` in the FETAL_PLANES_DB layout; reuse a finished folder."""

    def write(folder: Path) -> None:
        (folder / IMAGES_FOLDER).mkdir()
        rows = _plan(spec)
        patients: dict[int, list[tuple[int, dict]]] = {}
        for number, row in enumerate(rows):
            patients.setdefault(int(row["Patient_num"]), []).append((number, row))
        with progress_bar(total=len(patients), desc="generating fetal ultrasound phantoms", unit="patient") as bar:
            map_in_processes(partial(_write_patient, folder, spec), list(patients.values()), bar)
        header = ";".join(COLUMNS[:-1] + ("Train ",))
        lines = [";".join(str(row[column]) for column in COLUMNS) for row in rows]
        (folder / CSV_NAME).write_text("\n".join([header, *lines]) + "\n")

    return build_once(root, {**asdict(spec), "anatomy": ANATOMY_VERSION}, write)
