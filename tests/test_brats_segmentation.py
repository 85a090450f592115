"""brats_segmentation: slice-wise inference reassembles the volume; metrics per region; loss behaves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ssl_medbench.datasets.base import Volume
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.downstream.brats_segmentation import BratsSegmentation, soft_dice_loss
from ssl_medbench.downstream.metrics import dice, hd95


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
    assert table.loc[0, "hd95_whole"] == pytest.approx(hd95(whole_pred, whole_ref, (1.0, 1.0, 2.0)))
    assert table.loc[0, "dice_enhancing"] == 1.0
    assert table.loc[0, "empty_enhancing"] == "none"
    # the primary endpoint: core and enhancing are exact, the whole tumour misses one row of edema
    assert table.loc[0, "dice_mean"] == pytest.approx((dice(whole_pred, whole_ref) + 2) / 3)
    assert table.loc[0, "dice_mean"] < 1 and task.primary_metric == "dice_mean"
    assert task.metric_directions["hd95_core"] == "lower" and task.metric_directions["dice_core"] == "higher"


def test_summary_counts_subjects_under_an_empty_mask_rule():
    labels = np.zeros((16, 16, 4), np.uint8)
    labels[4:10, 4:10, 1:3] = 2  # edema only: core and enhancing are empty in the reference
    images = np.zeros((4, 16, 16, 4), np.float32)
    images[0] = labels
    task = _task()
    table = task.evaluate(OracleModel(), [Volume("S0", images, labels, (1.0, 1.0, 1.0))], torch.device("cpu"))
    summary = task.summarise(table)
    assert (
        table.loc[0, "empty_core"] == "both" and table.loc[0, "dice_core"] == 1.0 and table.loc[0, "hd95_core"] == 0.0
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
