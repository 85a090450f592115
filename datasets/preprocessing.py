"""Preprocessing every loader shares: refuse images that cannot be normalised and label maps outside their
convention, z-score images inside the foreground, and write the decoded arrays to the cache atomically."""

from __future__ import annotations

import math
from collections.abc import Collection
from pathlib import Path

import numpy as np

from ssl_medbench.core.atomic import atomic_path
from ssl_medbench.core.errors import DataError


def checked_image(image: np.ndarray, path: Path) -> np.ndarray:
    """``image`` unchanged; DataError naming ``path`` if it holds NaN or infinite values or a single value everywhere."""
    if not np.isfinite(image).all():
        raise DataError(f"{path}: contains NaN or infinite values")
    if image.size and image.min() == image.max():
        raise DataError(f"{path}: every voxel is {image.flat[0]:g}; an image without contrast cannot be normalised")
    return image


def checked_labels(labels: np.ndarray, path: Path | str, allowed: Collection[int], convention: str) -> np.ndarray:
    """``labels`` unchanged, checked before any cast; DataError naming ``path`` and the offending values unless
    every value is a whole, finite number in ``allowed`` (``convention`` names them in the message)."""
    values = np.unique(labels).tolist()
    bad = [value for value in values if not _whole(value) or int(value) not in allowed]
    if bad:
        shown = ", ".join(f"{value:.6g}" if isinstance(value, float) else str(value) for value in bad[:8])
        shown += ", ..." if len(bad) > 8 else ""
        expected = f"{allowed.start}..{allowed.stop - 1}" if isinstance(allowed, range) else sorted(allowed)
        raise DataError(f"{path}: label values [{shown}] outside the {convention} {expected}")
    return labels


def _whole(value: object) -> bool:
    """Whether ``value`` (a Python scalar from ``ndarray.tolist()``) is a finite whole number."""
    return isinstance(value, (bool, int)) or (isinstance(value, float) and math.isfinite(value) and value.is_integer())


def normalise(images: np.ndarray) -> np.ndarray:
    """Per-channel z-score of ``images`` (C, ...) inside the foreground (any channel non-zero); 0 outside."""
    foreground = np.any(images != 0, axis=0)
    out = np.zeros_like(images, dtype=np.float32)
    if not foreground.any():
        return out
    for channel, image in enumerate(images):
        values = image[foreground]
        std = values.std()
        out[channel][foreground] = (values - values.mean()) / (std if std > 0 else 1.0)
    return out


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` atomically (a reader never sees half a file)."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.save(handle, array)
