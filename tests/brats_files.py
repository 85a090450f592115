"""Write small BraTS subject folders in either naming convention, for loader tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

LEGACY = ("t1", "t1ce", "t2", "flair")
BRATS2023 = ("t1n", "t1c", "t2w", "t2f")


def write_subject(
    root: Path,
    subject: str,
    naming: str = "2021",
    shape: tuple[int, int, int] = (12, 10, 8),
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    seed: int = 0,
    skip: tuple[str, ...] = (),
    extension: str = ".nii.gz",
) -> Path:
    """A subject with a cubic 'tumour' (labels 1 core, 2 edema, 4 or 3 enhancing) and random brain intensities."""
    rng = np.random.default_rng(seed)
    folder = root / subject
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing, 1.0])
    separator, suffixes, enhancing = ("-", BRATS2023, 3) if naming == "2023" else ("_", LEGACY, 4)
    seg = np.zeros(shape, np.uint8)
    seg[3:9, 3:8, 2:6] = 2
    seg[4:8, 4:7, 3:5] = enhancing
    seg[5:7, 5:6, 3:5] = 1
    for suffix in suffixes:
        if suffix in skip:
            continue
        image = rng.uniform(100, 1000, shape).astype(np.float32)
        image[0, :, :] = 0  # background outside the brain
        nib.save(nib.Nifti1Image(image, affine), folder / f"{subject}{separator}{suffix}{extension}")
    if "seg" not in skip:
        nib.save(nib.Nifti1Image(seg, affine), folder / f"{subject}{separator}seg{extension}")
    return folder
