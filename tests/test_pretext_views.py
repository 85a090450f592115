"""Pretraining sees the downstream network's view: the same sampler and orientation, the right number of pretrain
jobs, and a documented geometry per view size (docs/pretext_views.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.grid import load_grid
from benchmark.planner import plan_grid
from benchmark.preflight import check_native_views, check_networks
from ssl_medbench.core.errors import ConfigError
from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.medmnist import MedMNISTFile
from ssl_medbench.datasets.views import AxialPatches, OrthogonalSlices, WholeImages
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import PretextTask

DOCS = Path(__file__).resolve().parents[1] / "docs" / "pretext_views.md"
SIDES = (64, 128, 224)


def _ct(subject: str = "ct-0") -> Volume:
    """An anisotropic CT whose voxels hold their own coordinates, so a slice shows where and how it was cut."""
    x, y, z = np.meshgrid(np.arange(20), np.arange(14), np.arange(9), indexing="ij")
    images = (x + 100 * y + 10_000 * z).astype(np.float32)[None]
    labels = np.zeros(images.shape[1:], np.uint8)
    labels[5:9, 3:7, 2:5] = 1
    return Volume(subject, images, labels, (0.8, 0.8, 2.5))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_localisation_pretraining_draws_the_very_slices_the_task_trains_on(seed):
    """Same subject, axis, slice and resampling: the unlabelled sampler and the task's sampler agree pixel for pixel."""
    task = DOWNSTREAM_TASKS.get("abdominal_organ_localisation")
    task = task(task.Config(slice_size=32), 1, ("liver",))
    assert task.input_view() == OrthogonalSlices(32)
    trained, _ = task.make_sampler([_ct("a"), _ct("b")]).sample(6, torch.Generator().manual_seed(seed))
    pretrained, _ = (
        task.input_view().unlabelled_sampler([_ct("a"), _ct("b")]).sample(6, torch.Generator().manual_seed(seed))
    )
    assert pretrained.shape == trained.shape == (6, 1, 32, 32) and torch.equal(pretrained, trained)


def test_segmentation_pretraining_takes_axial_patches_of_the_tasks_size_and_orientation():
    task = DOWNSTREAM_TASKS.get("brats_segmentation")
    task = task(task.Config(patch_size=8, foreground_fraction=0.0), 4)
    volume = _ct()
    volume = Volume("s", np.repeat(volume.images, 4, axis=0), volume.labels, volume.spacing)
    trained, _ = task.make_sampler([volume]).sample(5, torch.Generator().manual_seed(3))
    pretrained, _ = task.input_view().unlabelled_sampler([volume]).sample(5, torch.Generator().manual_seed(3))
    assert task.input_view() == AxialPatches(8) and torch.equal(pretrained, trained)
    # axial: each patch lies in one z slice (constant 10000 z digit), rows along x, columns along y
    z = torch.div(pretrained[:, 0], 10_000, rounding_mode="floor")
    assert bool((z == z[:, :1, :1]).all())
    assert bool((pretrained[:, 0, 1:, 0] - pretrained[:, 0, :-1, 0] == 1).all())  # x steps by 1 down the rows
    assert bool((pretrained[:, 0, 0, 1:] - pretrained[:, 0, 0, :-1] == 100).all())  # y steps by 1 along the columns


def test_classification_pretraining_takes_whole_images_uniformly():
    images = np.stack([np.full((6, 6), index, np.float32) for index in range(4)], axis=-1)[None]
    volume = Volume("p", images, np.zeros((6, 6, 4), np.uint8), (1.0, 1.0, 1.0), np.array([0, 0, 0, 1]))
    task = DOWNSTREAM_TASKS.get("fetal_plane_classification")
    task = task(task.Config(), 1, ("a", "b"))
    assert task.input_view() == WholeImages() and task.input_view().name == "images@native"
    drawn, _ = task.input_view().unlabelled_sampler([volume]).sample(400, torch.Generator().manual_seed(0))
    assert drawn.shape == (400, 1, 6, 6)
    counts = np.bincount(drawn[:, 0, 0, 0].long().numpy(), minlength=4)
    assert counts.min() > 70  # uniform over images: about 100 each, where class balance would give image 3 half


def _grid(*overrides: str):
    """The smoke grid at 100 % of the labels, finetune only, with ``overrides``."""
    return load_grid("smoke", ["seeds=[0]", "fractions=[1.0]", "label_subjects=[]", "protocols_by_task={}", *overrides])


def test_two_tasks_on_one_dataset_pretrain_once_per_view():
    """Localisation on the fetal images: slices_xyz@64 and the classifier's images@64 are two views, two jobs."""
    base = _grid("initialisations=[random, jigsaw]", "downstream_tasks=[fetal_plane_classification]")
    versions = {name: f"v-{name}" for name in base.datasets}
    assert len(plan_grid(base, versions).pretrain_jobs) == 1
    both = _grid(
        "initialisations=[random, jigsaw]",
        "downstream_tasks=[fetal_plane_classification, abdominal_organ_localisation]",
        "downstream.abdominal_organ_localisation.dataset=fetal_phantom",
    )
    jobs = plan_grid(both, versions).pretrain_jobs
    assert sorted(job.view.name for job in jobs) == ["images@native", "slices_xyz@64"]
    assert len({job.key for job in jobs}) == 2
    shared = _grid(
        "initialisations=[random, jigsaw]",
        "downstream_tasks=[brats_segmentation, abdominal_organ_localisation]",
        "downstream.abdominal_organ_localisation.dataset=brats_phantom",
        "downstream.abdominal_organ_localisation.slice_size=64",
    )
    assert len(plan_grid(shared, versions).pretrain_jobs) == 2  # axial patches and xyz slices of one dataset
    cells = plan_grid(shared, versions).finetune_cells
    pretrained = {cell.downstream_task: cell.pretrain_key for cell in cells if cell.pretrain_key}
    assert pretrained["brats_segmentation"] != pretrained["abdominal_organ_localisation"]


def test_the_view_size_is_in_the_pretrain_key_and_pretrain_patch_size_is_gone():
    versions = {"brats_phantom": "v", "fetal_phantom": "f", "ct_phantom": "c"}
    small = plan_grid(_grid(), versions).pretrain_jobs
    large = plan_grid(_grid("downstream.abdominal_organ_localisation.slice_size=128"), versions).pretrain_jobs
    changed = {job.key for job in large} - {job.key for job in small}
    assert {job.view.name for job in large if job.key in changed} == {"slices_xyz@128"}
    with pytest.raises(ConfigError, match="pretrain.patch_size: no longer a setting"):
        _grid("pretrain.patch_size=64")


def test_pretext_settings_per_dataset_replace_the_common_ones():
    grid = load_grid("paper")
    assert grid.pretext_config_for("context_restoration", "ct").patch_size == 16
    assert grid.pretext_config_for("context_restoration", "brats").patch_size == 8
    with pytest.raises(ConfigError, match="pretext_by_dataset.nowhere: not a dataset of this grid"):
        _grid("pretext_by_dataset={nowhere: {jigsaw: {num_permutations: 10}}}")


def _formatted(geometry: dict) -> str:
    return ", ".join(f"{name} {value}" for name, value in geometry.items())


def test_every_default_fits_every_documented_view_size_and_the_table_is_the_codes():
    docs = DOCS.read_text()
    for name in PRETEXT_TASKS.names():
        cls = PRETEXT_TASKS.get(name)
        if not issubclass(cls, PretextTask):
            continue
        task = cls()
        for side in SIDES:
            task.check_image_size(side, side)
            inputs, _ = task.make_batch(torch.zeros(2, 1, side, side), torch.Generator().manual_seed(0))
            assert tuple(inputs.shape) == task.batch_spec((2, 1, side, side)).inputs.shape
        cells = [_formatted(task.geometry(side)) for side in SIDES]
        if any(cells):
            assert f"| {name} | {' | '.join(cells)} |" in docs, f"docs/pretext_views.md: {name}'s row is stale"


def test_the_documented_preset_views_are_the_presets():
    docs = DOCS.read_text()
    for preset in ("smoke", "paper", "full"):
        grid = load_grid(preset)
        for task in grid.downstream_tasks:
            view = grid.input_view(task)
            side = view.size or grid.dataset_config(grid.downstream_config(task).dataset).image_size
            row = f"| {grid.downstream_config(task).dataset} | {task} | {view.kind}@{side}"
            assert row in docs, f"docs/pretext_views.md lacks {preset}'s row {row!r}"


def test_a_native_size_view_is_checked_on_the_prepared_images(tmp_path):
    """MedMNIST at its own 28-pixel size: no grid key sets the side, so the pretext networks are checked on a prepared
    image instead of failing inside every pretrain job."""
    config = MedMNISTFile.example_config(tmp_path / "mnist")
    grid = _grid(
        f"datasets={{mnist: {{type: medmnist, path: {config.path}}}}}",
        "downstream_tasks=[fetal_plane_classification]",
        "downstream.fetal_plane_classification.dataset=mnist",
        "initialisations=[random, autoencoder]",
    )
    datasets = {"mnist": MedMNISTFile(config, tmp_path / "out")}
    check_networks(grid, datasets)  # nothing to check before the data are read
    datasets["mnist"].prepare()
    with pytest.raises(ConfigError, match=r"datasets.mnist.image_size \(the images' own size\): 28 does not fit the "):
        check_native_views(grid, datasets)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("{fetal_phantom: {random_augmentation: {rotation_degrees: 30.0}}}", "random_augmentation does not pretrain"),
        ("{fetal_phantom: {relative_position: {patch_fraction: 0.2}}}", "'relative_position' is not one of this grid"),
    ],
)
def test_per_dataset_settings_only_for_the_grids_pretext_tasks(setting, message):
    with pytest.raises(ConfigError, match=message):
        _grid("initialisations=[random, random_augmentation, jigsaw]", f"pretext_by_dataset={setting}")
