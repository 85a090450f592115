"""brats_segmentation: slice-wise inference reassembles the volume; metrics per region; loss behaves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ssl_medbench.datasets.base import Volume
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.downstream.brats_segmentation import BratsSegmentation
from ssl_medbench.downstream.lesion_wise import lesion_wise_scores
from ssl_medbench.downstream.metrics import (
    BRATS_2023,
    HD95_CONVENTIONS,
    dice,
    hd95,
    image_diagonal_mm,
    normalized_surface_dice,
)
from ssl_medbench.downstream.segmentation import soft_dice_loss


class OracleModel(nn.Module):
    """Outputs one-hot logits of labels hidden in channel 0 of the input (value = class)."""

    def __init__(self):
        super().__init__()
        self.decoder = type("D", (), {"size_multiple": 8})()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert images.shape[-1] % 8 == 0 and images.shape[-2] % 8 == 0
        return nn.functional.one_hot(images[:, 0].round().long(), 4).permute(0, 3, 1, 2).float()


def _task() -> BratsSegmentation:
    return DOWNSTREAM_TASKS.get("brats_segmentation")(BratsSegmentation.Config(inference_batch=3), image_channels=4)


def test_slice_wise_prediction_reassembles_the_volume():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (13, 11, 7)).astype(np.uint8)
    images = np.zeros((4, 13, 11, 7), np.float32)
    images[0] = labels
    predicted = _task().predict_volume(OracleModel(), images, torch.device("cpu"))
    assert np.array_equal(predicted, labels)


def test_evaluate_reports_every_region_and_metric():
    labels = np.zeros((16, 16, 6), np.uint8)
    labels[4:10, 4:10, 1:5] = 2
    labels[5:8, 5:8, 2:4] = 3
    images = np.zeros((4, 16, 16, 6), np.float32)
    images[0] = labels
    images[0, 4, 4:10, 1:5] = 0  # the prediction misses one row of edema
    volume = Volume("S0", images, labels, (1.0, 1.0, 2.0))
    table = _task().evaluate(OracleModel(), [volume], torch.device("cpu"))
    assert list(table["subject_id"]) == ["S0"]
    task = _task()
    for metric in task.metric_directions:
        assert metric in table.columns
    whole_pred, whole_ref = images[0] > 0, labels > 0
    assert table.loc[0, "dice_whole"] == pytest.approx(dice(whole_pred, whole_ref))
    spacing = (1.0, 1.0, 2.0)
    assert table.loc[0, "hd95_medpy_whole"] == pytest.approx(hd95(whole_pred, whole_ref, spacing))
    surface = hd95(whole_pred, whole_ref, spacing, "surface_elements")
    assert table.loc[0, "hd95_surface_elements_whole"] == pytest.approx(surface)
    assert table.loc[0, "nsd_1mm_whole"] == pytest.approx(normalized_surface_dice(whole_pred, whole_ref, spacing, 1.0))
    assert table.loc[0, "nsd_2mm_whole"] == pytest.approx(normalized_surface_dice(whole_pred, whole_ref, spacing, 2.0))
    # the missed row moves one face of the whole tumour by 1 mm: every surface element lies within 1 mm of the other
    assert table.loc[0, "nsd_1mm_whole"] == 1.0 and surface == 1.0
    assert normalized_surface_dice(whole_pred, whole_ref, spacing, 0.5) < 1.0
    assert table.loc[0, "dice_enhancing"] == 1.0
    assert table.loc[0, "empty_enhancing"] == "none"
    # the primary endpoint: core and enhancing are exact, the whole tumour misses one row of edema
    assert table.loc[0, "dice_mean"] == pytest.approx((dice(whole_pred, whole_ref) + 2) / 3)
    assert table.loc[0, "dice_mean"] < 1 and task.primary_metric == "dice_mean"
    assert task.metric_directions["hd95_medpy_core"] == "lower" and task.metric_directions["dice_core"] == "higher"
    assert task.metric_directions["nsd_2mm_core"] == "higher" and task.metric_units["nsd_2mm_core"] == "fraction"


def test_summary_counts_subjects_under_an_empty_mask_rule():
    labels = np.zeros((16, 16, 4), np.uint8)
    labels[4:10, 4:10, 1:3] = 2  # edema only: core and enhancing are empty in the reference
    images = np.zeros((4, 16, 16, 4), np.float32)
    images[0] = labels
    task = _task()
    table = task.evaluate(OracleModel(), [Volume("S0", images, labels, (1.0, 1.0, 1.0))], torch.device("cpu"))
    summary = task.summarise(table)
    assert (
        table.loc[0, "empty_core"] == "both"
        and table.loc[0, "dice_core"] == 1.0
        and table.loc[0, "hd95_medpy_core"] == 0.0
    )
    assert (
        summary["empty_masks_whole"] == 0 and summary["empty_masks_core"] == 1 and summary["empty_masks_enhancing"] == 1
    )
    assert np.isnan(summary["sensitivity_core"])


def test_soft_dice_loss_is_zero_for_perfect_logits_and_high_for_wrong_ones():
    targets = torch.randint(0, 4, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    perfect = nn.functional.one_hot(targets, 4).permute(0, 3, 1, 2).float() * 100
    assert soft_dice_loss(perfect, targets, [1, 2, 3]) < 1e-3
    shifted = (targets + 1) % 4
    wrong = nn.functional.one_hot(shifted, 4).permute(0, 3, 1, 2).float() * 100
    # no overlap: per class 1 - 1 / (|P| + |T| + 1), with the +1 smoothing of the loss
    expected = np.mean([1 - 1 / (int((shifted == c).sum()) + int((targets == c).sum()) + 1) for c in (1, 2, 3)])
    assert float(soft_dice_loss(wrong, targets, [1, 2, 3])) == pytest.approx(expected, rel=1e-5)


def test_the_metric_settings_choose_the_logged_metrics_and_their_empty_mask_policy():
    """Another convention, no NSD, lesion-wise scores and the BraTS 2023 policy: the table has exactly the declared
    metrics, and a missed region scores 374 mm under every distance metric (its 36 mm³ lesion counts above 10 mm³)."""
    config = BratsSegmentation.Config(
        hd95_conventions=("max_directed",),
        nsd_tolerances_mm=(),
        empty_mask_policy="brats2023",
        lesion_wise=True,
        lesion_volume_threshold_mm3=10.0,
    )
    task = BratsSegmentation(config, image_channels=4)
    labels = np.zeros((16, 16, 6), np.uint8)
    labels[4:10, 4:10, 1:5] = 2
    labels[5:8, 5:8, 2:4] = 3
    images = np.zeros((4, 16, 16, 6), np.float32)
    images[0] = np.where(labels == 3, 0, labels)  # the enhancing tumour is missed
    table = task.evaluate(OracleModel(), [Volume("S0", images, labels, (1.0, 1.0, 2.0))], torch.device("cpu"))
    stems = {"dice", "sensitivity", "specificity", "hd95_max_directed", "lesion_dice", "lesion_hd95", "lesion_fp"}
    expected = {f"{stem}_{region}" for stem in stems | {"lesion_fn"} for region in ("whole", "core", "enhancing")}
    assert set(task.metric_directions) == expected | {"dice_mean"}
    assert set(task.metric_directions) <= set(table.columns)
    assert not any(column.startswith(("nsd_", "hd95_medpy")) for column in table.columns)
    assert table.loc[0, "hd95_max_directed_enhancing"] == 374.0
    assert table.loc[0, "lesion_hd95_enhancing"] == 374.0 and table.loc[0, "lesion_fn_enhancing"] == 1.0
    whole_pred, whole_ref = images[0] > 0, labels > 0
    lesions = lesion_wise_scores(whole_pred, whole_ref, (1.0, 1.0, 2.0), 3, 10.0, BRATS_2023)
    # one lesion, matched, no false positive: its lesion-wise Dice is the whole-volume Dice
    assert table.loc[0, "lesion_dice_whole"] == pytest.approx(lesions.dice) == dice(whole_pred, whole_ref)
    conventions = task.metric_conventions()
    assert set(conventions) == {"hd95_max_directed_<region>", "lesion_<metric>_<region>", "empty masks"}
    assert "above 10 mm³" in conventions["lesion_<metric>_<region>"]
    assert "374 mm" in conventions["empty masks"] and "MONAI" in conventions["hd95_max_directed_<region>"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"hd95_conventions": ("medpy", "hausdorff")},
            "hd95_conventions \\['medpy', 'hausdorff'\\]: expected distinct",
        ),
        (
            {"hd95_conventions": ("medpy", "medpy")},
            "expected distinct names from medpy, max_directed, surface_elements",
        ),
        ({"nsd_tolerances_mm": (1.0, 0.0)}, "nsd_tolerances_mm \\[1.0, 0.0\\]: expected distinct tolerances > 0 mm"),
        ({"nsd_tolerances_mm": (1.0, 1.0)}, "expected distinct tolerances"),
        ({"nsd_tolerances_mm": (float("inf"),)}, "nsd_tolerances_mm \\[inf\\]: expected distinct tolerances > 0 mm"),
        ({"lesion_dilation_iterations": -1}, "lesion_dilation_iterations -1: expected 0 or more"),
        ({"lesion_dilation_iterations": 2.5}, "lesion_dilation_iterations 2.5: expected 0 or more"),
        ({"lesion_volume_threshold_mm3": math.nan}, "lesion_volume_threshold_mm3 nan: expected a finite volume"),
        ({"lesion_wise": "no"}, "lesion_wise 'no': expected true or false"),
        ({"hd95_conventions": "medpy"}, "hd95_conventions 'medpy': expected distinct names"),
        ({"nsd_tolerances_mm": ("1",)}, "nsd_tolerances_mm \\['1'\\]: expected distinct tolerances > 0 mm"),
        ({"nsd_tolerances_mm": (1.0, 1.0000001)}, "these share a metric name \\(nsd_1mm, 6 significant digits\\)"),
        ({"empty_mask_policy": "nan"}, "empty_mask_policy 'nan': expected one of image_diagonal, brats2023"),
    ],
)
def test_metric_settings_the_task_cannot_compute_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        BratsSegmentation(BratsSegmentation.Config(**settings), image_channels=4)


def _stray_voxel_case():
    labels = np.zeros((24, 24, 6), np.uint8)
    labels[4:10, 4:10, 1:5] = 2
    images = np.zeros((4, *labels.shape), np.float32)
    images[0] = labels
    images[0, 4, 4:10, 1:5] = 0  # one missed row of the whole tumour (1 mm)
    images[0, 16:18, 16:18, 2:4] = 2  # a stray 2x2x2 block about 10 mm away
    return labels, images, (1.0, 1.0, 2.0)


def test_every_hd95_and_nsd_column_holds_its_own_convention_and_tolerance():
    config = BratsSegmentation.Config(hd95_conventions=tuple(HD95_CONVENTIONS), nsd_tolerances_mm=(0.5, 1.0, 12.0))
    task = BratsSegmentation(config, image_channels=4)
    labels, images, spacing = _stray_voxel_case()
    table = task.evaluate(OracleModel(), [Volume("S0", images, labels, spacing)], torch.device("cpu"))
    pred, ref = images[0] > 0, labels > 0
    hd = {c: hd95(pred, ref, spacing, c) for c in HD95_CONVENTIONS}
    nsd = {t: normalized_surface_dice(pred, ref, spacing, t) for t in config.nsd_tolerances_mm}
    assert len(set(hd.values())) == 3 and len(set(nsd.values())) == 3  # the case tells them all apart
    for convention, value in hd.items():
        assert table.loc[0, f"hd95_{convention}_whole"] == pytest.approx(value)
    for tolerance, value in nsd.items():
        assert table.loc[0, f"nsd_{tolerance:g}mm_whole"] == pytest.approx(value)


def test_metric_conventions_names_each_conventions_own_definition():
    config = BratsSegmentation.Config(hd95_conventions=tuple(HD95_CONVENTIONS))
    conventions = BratsSegmentation(config, image_channels=4).metric_conventions()
    for convention, definition in HD95_CONVENTIONS.items():
        assert conventions[f"hd95_{convention}_<region>"] == definition


def test_tolerances_that_share_a_metric_name_are_refused():
    """1 mm and 1.0000001 mm are distinct numbers but would both be logged as nsd_1mm_<region>."""
    with pytest.raises(ValueError, match="expected distinct tolerances"):
        BratsSegmentation(BratsSegmentation.Config(nsd_tolerances_mm=(1.0, 1.0000001)), image_channels=4)


def test_lesion_wise_scores_follow_the_configured_empty_mask_policy():
    """Default image_diagonal policy: a missed enhancing lesion scores the image diagonal, not BraTS's 374 mm."""
    config = BratsSegmentation.Config(lesion_wise=True, lesion_volume_threshold_mm3=10.0)
    task = BratsSegmentation(config, image_channels=4)
    labels = np.zeros((16, 16, 6), np.uint8)
    labels[4:10, 4:10, 1:5] = 2
    labels[5:8, 5:8, 2:4] = 3
    images = np.zeros((4, *labels.shape), np.float32)
    images[0] = np.where(labels == 3, 0, labels)
    spacing = (1.0, 1.0, 2.0)
    table = task.evaluate(OracleModel(), [Volume("S0", images, labels, spacing)], torch.device("cpu"))
    diagonal = image_diagonal_mm(labels.shape, spacing)
    assert table.loc[0, "hd95_medpy_enhancing"] == pytest.approx(diagonal)
    assert table.loc[0, "lesion_hd95_enhancing"] == pytest.approx(diagonal)


def test_lesion_metric_directions_and_units():
    task = BratsSegmentation(BratsSegmentation.Config(lesion_wise=True), image_channels=4)
    for region in ("whole", "core", "enhancing"):
        assert task.metric_directions[f"lesion_dice_{region}"] == "higher"
        for stem in ("lesion_hd95", "lesion_fp", "lesion_fn"):
            assert task.metric_directions[f"{stem}_{region}"] == "lower"
        assert task.metric_units[f"lesion_fp_{region}"] == task.metric_units[f"lesion_fn_{region}"] == "lesions"
