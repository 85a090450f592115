"""Locate and load the MNI152 ICBM 2009a templates that ship inside the nilearn wheel (without importing nilearn)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ssl_medbench.core.errors import UserError

TEMPLATE_FILES = {name: f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz" for name in ("t1", "gm", "wm")}


def template_folder() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the built-in brain phantoms need nilearn's MNI152 templates: pip install nilearn")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    missing = [f for f in TEMPLATE_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise UserError(f"{folder}: nilearn is installed but lacks {', '.join(missing)}")
    return folder


def load_tissue_maps(voxel_size_mm: float) -> dict[str, np.ndarray]:
    """Grey matter, white matter and CSF probabilities in [0, 1] at ``voxel_size_mm`` (template is 1 mm).

    CSF is the rest of the filled brain mask (ventricles and sulci): the template ships no CSF map.
    """
    folder = template_folder()
    maps = {}
    for name in ("gm", "wm"):
        data = np.asarray(nib.load(folder / TEMPLATE_FILES[name]).dataobj, dtype=np.float32) / 255.0
        maps[name] = np.clip(ndimage.zoom(data, 1.0 / voxel_size_mm, order=1), 0.0, 1.0) if voxel_size_mm != 1 else data
    tissue = maps["gm"] + maps["wm"]
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(tissue > 0.1, iterations=2))
    scale = np.maximum(tissue, 1.0)  # keep gm + wm <= 1
    maps["gm"], maps["wm"] = maps["gm"] / scale, maps["wm"] / scale
    maps["csf"] = np.where(brain, 1.0 - maps["gm"] - maps["wm"], 0.0).astype(np.float32)
    return maps
