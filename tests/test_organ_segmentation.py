"""Abdominal organ segmentation (issue 18): per-organ Dice and NSD worked out by hand, the empty-organ rule, the
image-blind mean boxes, and a run end to end in 2D and in 3D on the CT phantoms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.views import AxialPatches, Cubes
from ssl_medbench.downstream.abdominal_organ_segmentation import AbdominalOrganSegmentation, painted_boxes
from ssl_medbench.downstream.metrics import normalized_surface_dice

ORGANS = ("left_kidney", "liver")


def _task(spatial_dims: int = 2, **config) -> AbdominalOrganSegmentation:
    return AbdominalOrganSegmentation.build(
        AbdominalOrganSegmentation.Config(**config), 1, ORGANS, spatial_dims=spatial_dims
    )


def _volume(labels: np.ndarray, subject: str = "ct") -> Volume:
    return Volume(subject, np.zeros((1, *labels.shape), np.float32), labels, (1.0, 1.0, 2.0))


def test_dice_and_nsd_per_organ_follow_their_hand_computed_values():
    reference = np.zeros((10, 10, 4), np.uint8)
    reference[1:5, 1:5, 1:3] = 1  # kidney: 32 voxels
    reference[6:9, 6:9, 0:4] = 2  # liver: 36 voxels
    predicted = np.zeros_like(reference)
    predicted[1:5, 1:3, 1:3] = 1  # half of the kidney: 16 voxels, all inside
    predicted[6:9, 6:9, 0:4] = 2  # the liver exactly
    row = _task(nsd_tolerances_mm=(1.0,)).subject_row(_volume(reference), predicted)
    assert row["dice_left_kidney"] == pytest.approx(2 * 16 / (32 + 16))
    assert row["dice_liver"] == 1.0 and row["nsd_1mm_liver"] == 1.0
    assert row["dice_mean"] == pytest.approx((2 / 3 + 1) / 2)
    expected_nsd = normalized_surface_dice(predicted == 1, reference == 1, (1.0, 1.0, 2.0), 1.0)
    assert row["nsd_1mm_left_kidney"] == pytest.approx(expected_nsd) and 0 < expected_nsd < 1
    assert row["empty_left_kidney"] == row["empty_liver"] == "none"


def test_an_organ_absent_from_a_subject_scores_one_if_not_predicted_and_zero_if_predicted():
    reference = np.zeros((8, 8, 3), np.uint8)
    reference[1:4, 1:4, :] = 1  # no liver
    task = _task(nsd_tolerances_mm=(2.0,))
    agreed = task.subject_row(_volume(reference), reference.copy())
    assert agreed["dice_liver"] == 1.0 and agreed["nsd_2mm_liver"] == 1.0 and agreed["empty_liver"] == "both"
    hallucinated = reference.copy()
    hallucinated[6, 6, 1] = 2
    wrong = task.subject_row(_volume(reference), hallucinated)
    assert wrong["dice_liver"] == 0.0 and wrong["nsd_2mm_liver"] == 0.0 and wrong["empty_liver"] == "reference"
    missed = task.subject_row(_volume(reference), np.zeros_like(reference))
    assert missed["empty_left_kidney"] == "prediction" and missed["dice_mean"] == pytest.approx(0.5)
    table = pd.DataFrame([missed, missed])
    assert AbdominalOrganSegmentation.never_predicted(table) == ["left_kidney"]
    summary = task.summarise(table)
    assert summary["empty_masks_left_kidney"] == 2 and summary["empty_masks_liver"] == 2


def test_the_image_blind_reference_paints_the_mean_box_of_each_organ_clipped_to_each_volume():
    first = np.zeros((12, 12, 6), np.uint8)
    first[2:6, 2:6, 1:3] = 1
    first[7:11, 7:11, 2:5] = 2
    second = np.zeros((12, 12, 6), np.uint8)
    second[4:8, 2:6, 1:3] = 1  # no liver: the liver's box is the first subject's
    boxes = [np.array([[3, 6], [2, 5], [1, 2]]), np.array([[7, 10], [7, 10], [2, 4]])]
    expected = painted_boxes(boxes, (12, 12, 6))
    assert (expected == 1).sum() == 4 * 4 * 2 and (expected == 2).sum() == 4 * 4 * 3
    small = painted_boxes(boxes, (9, 9, 3))  # clipped to a smaller volume
    assert (small == 2).sum() == 2 * 2 * 1
    task = _task()
    scores = task.image_blind_scores([_volume(first, "a"), _volume(second, "b")], [_volume(first, "t")])
    assert scores.loc[0, "dice_liver"] == 1.0
    assert scores.loc[0, "dice_left_kidney"] == pytest.approx(2 * 24 / (32 + 32))


def test_metrics_follow_the_dataset_organs_and_the_views_follow_the_dimensions():
    specs = AbdominalOrganSegmentation.metric_specs(ORGANS, AbdominalOrganSegmentation.Config(nsd_tolerances_mm=(1.0,)))
    assert list(specs) == ["dice_left_kidney", "dice_liver", "nsd_1mm_left_kidney", "nsd_1mm_liver", "dice_mean"]
    assert len(AbdominalOrganSegmentation.metric_specs()) == 5 * 3 + 1  # the paper's five organs by default
    assert _task(patch_size=32).input_view() == AxialPatches(32)
    assert _task(3, patch_size=32).input_view() == Cubes(32)
    with pytest.raises(ValueError, match="nsd_tolerances_mm"):
        _task(nsd_tolerances_mm=(0.0,))
    task = _task(3, patch_size=16)
    assert task.num_classes == 3
    outputs = torch.zeros(2, 3, 16, 16, 16)
    assert set(task.loss(outputs, torch.zeros(2, 16, 16, 16, dtype=torch.int64))) == {
        "loss",
        "cross_entropy",
        "soft_dice",
    }


@pytest.mark.slow
@pytest.mark.parametrize("spatial_dims", [3])
def test_organ_segmentation_runs_end_to_end_on_the_ct_phantoms(spatial_dims, tmp_path, capsys):
    """In 3D (the 2D form meets the same contract and shares its runner path with BraTS in 2D)."""
    grid = {
        "name": f"organs{spatial_dims}d",
        "spatial_dims": spatial_dims,
        "seeds": [0],
        "fractions": [1.0],
        "initialisations": ["random", "context_restoration"],
        "downstream_tasks": ["abdominal_organ_segmentation"],
        "datasets": {
            "ct": {"type": "abdominal_ct_phantom", "n_subjects": 4, "spacing_xy_mm": 8.0, "spacing_z_mm": 10.0}
        },
        "encoder": {"name": "chen_vgg" if spatial_dims == 2 else "chen_vgg3d", "kwargs": {"channels": [4, 8, 16]}},
        "pretrain": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 2},
        "finetune": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 2},
        "pretext": {"context_restoration": {"iterations": 2, "patch_size": 4}},
        "downstream": {"abdominal_organ_segmentation": {"dataset": "ct", "patch_size": 16, "inference_batch": 4}},
    }
    path, out = tmp_path / "grid.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(grid))
    assert main(["run", "--grid", str(path), "--out", str(out), "--no-progress"]) == 0
    assert "3 jobs finished, 0 skipped" in capsys.readouterr().out
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(f"grid-organs{spatial_dims}d").experiment_id])
    finetune = [run for run in runs if run.data.tags["kind"] == "finetune"]
    assert len(finetune) == 2 and all(run.info.status == "FINISHED" for run in runs)
    for run in finetune:
        assert 0 <= run.data.metrics["dice_mean"] <= 1 and "nsd_2mm_liver" in run.data.metrics
        assert run.data.tags["spatial_dims"] == str(spatial_dims)
    report = (out / "report" / "report.md").read_text()
    assert "abdominal_organ_segmentation" in report


def test_the_soft_dice_term_covers_every_organ_and_only_the_organs():
    from ssl_medbench.downstream.segmentation import soft_dice_loss

    task = _task(3, patch_size=8)
    outputs = torch.randn(2, 3, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 3, (2, 8, 8, 8), generator=torch.Generator().manual_seed(1))
    assert torch.equal(task.loss(outputs, targets)["soft_dice"], soft_dice_loss(outputs, targets, [1, 2]))
