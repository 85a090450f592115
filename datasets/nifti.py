"""Reading NIfTI files into canonical (RAS+) arrays and checking that images and labels share one grid."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from ssl_medbench.core.errors import DataError


def read_nifti(path: Path) -> nib.Nifti1Image:
    try:
        return nib.load(path)
    except Exception as error:
        raise DataError(f"{path}: not a readable NIfTI file ({type(error).__name__}: {error})") from None


def read_array(path: Path, dtype: type | None = np.float32) -> np.ndarray:
    """The image data reoriented to the closest canonical (RAS+) axes, so the last axis is axial whatever the storage
    order; ``dtype=None`` keeps the stored values (with the header's scaling) as they are, for checking labels."""
    try:
        return np.asarray(nib.as_closest_canonical(read_nifti(path)).dataobj, dtype=dtype)
    except DataError:
        raise
    except (OSError, EOFError, ValueError, zlib.error) as error:
        raise DataError(
            f"{path}: cannot decode image data, the file may be truncated ({type(error).__name__}: {error})"
        ) from None


def check_same_grid(reference_path: Path, paths: Sequence[Path]) -> tuple[float, float, float]:
    """Every file readable, 3D, with the reference's shape and affine; returns the canonical voxel spacing in mm (to 1e-6 mm)."""
    reference = read_nifti(reference_path)
    if len(reference.shape) != 3:
        raise DataError(f"{reference_path}: expected a 3D image, got shape {reference.shape}")
    for path in paths:
        image = read_nifti(path)
        if image.shape != reference.shape:
            raise DataError(f"{path}: shape {image.shape} differs from {reference_path.name} {reference.shape}")
        if not np.allclose(image.affine, reference.affine, atol=1e-3):
            raise DataError(f"{path}: affine differs from {reference_path.name}; images and labels must share one grid")
    return tuple(round(float(z), 6) for z in nib.as_closest_canonical(reference).header.get_zooms()[:3])
