from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ssl_medbench.datasets.phantom_generators.brats import PhantomSpec, generate_brats_phantoms

TINY_PHANTOM = PhantomSpec(n_subjects=4, voxel_size_mm=4.0, seed=0)
#: Six fetal patients of four 48-pixel images each, read at 32 pixels: a plane-classification grid in seconds.
TINY_FETAL_PHANTOM = {
    "type": "fetal_planes_phantom",
    "n_patients": 6,
    "images_per_patient": 4,
    "height": 48,
    "image_size": 32,
    "test_fraction": 0.34,
}

#: The seven initialisations of Chen et al. (2019), by registry name.
PAPER_INITIALISATIONS = (
    "random",
    "random_augmentation",
    "autoencoder",
    "relative_position",
    "jigsaw",
    "context_prediction",
    "context_restoration",
)


@pytest.fixture(scope="session")
def tiny_phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four BraTS-layout phantom subjects at 4 mm (49 x 58 x 47 voxels), generated once per session."""
    return generate_brats_phantoms(tmp_path_factory.mktemp("phantom") / "brats", TINY_PHANTOM)


def tiny_grid(root: Path, **changes) -> dict:
    """A grid that runs end to end in seconds on the tiny phantoms."""
    grid = {
        "name": "tiny",
        "seeds": [0],
        "fractions": [1.0, 0.5],
        "initialisations": ["random", "context_restoration"],
        "downstream_tasks": ["brats_segmentation"],
        "datasets": {
            "phantom": {
                "type": "brats_phantom",
                "n_subjects": TINY_PHANTOM.n_subjects,
                "voxel_size_mm": TINY_PHANTOM.voxel_size_mm,
                "test_fraction": 0.25,
                "root": str(root),
            }
        },
        "encoder": {"name": "chen_vgg", "kwargs": {"channels": [8, 16, 32]}},
        "pretrain": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 4},
        "finetune": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 4},
        "pretext": {"context_restoration": {"iterations": 4, "patch_size": 4}},
        "downstream": {"brats_segmentation": {"dataset": "phantom", "patch_size": 32}},
    }
    grid.update(changes)
    return grid


@pytest.fixture
def write_grid(tmp_path: Path, tiny_phantom_root: Path):
    def write(**changes) -> Path:
        path = tmp_path / "grid.yaml"
        path.write_text(yaml.safe_dump(tiny_grid(tiny_phantom_root, **changes)))
        return path

    return write


@pytest.fixture(autouse=True)
def _progress_bars_back_on():
    """``--no-progress`` switches bars off process-wide; each test starts with them on, as a fresh process does."""
    from ssl_medbench.core.progress import enable_progress

    enable_progress(True)
    yield
    enable_progress(True)
