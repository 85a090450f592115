"""masked_modelling: the mask ratio is exact per image and uniform over patches, inputs are blanked exactly where the
mask is, and the loss sees masked pixels only."""

from __future__ import annotations

import pytest
import torch

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.masked_modelling import MaskedModelling, random_patch_masks


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_each_image_masks_exactly_its_share_of_whole_patches():
    masks = random_patch_masks(50, (64, 64), 8, 0.6, _generator(), torch.device("cpu"))
    cells = masks[:, 0, ::8, ::8]
    assert bool((cells.sum(dim=(1, 2)) == round(0.6 * 64)).all())
    whole = cells.repeat_interleave(8, dim=1).repeat_interleave(8, dim=2)
    assert torch.equal(masks[:, 0], whole)  # every 8 x 8 patch is masked whole or not at all


def test_patches_cut_by_the_border_are_masked_whole_and_the_mask_fits_the_image():
    masks = random_patch_masks(20, (30, 21), 8, 0.5, _generator(1), torch.device("cpu"))
    assert masks.shape == (20, 1, 30, 21)
    assert bool((masks[:, 0, ::8, ::8].sum(dim=(1, 2)) == round(0.5 * 4 * 3)).all())


def test_every_patch_is_masked_equally_often():
    """Over 4000 images each of the 64 patches is masked with probability 0.6 (within 4 standard errors)."""
    draws = 4000
    cells = random_patch_masks(draws, (64, 64), 8, 0.6, _generator(2), torch.device("cpu"))[:, 0, ::8, ::8]
    shares = cells.mean(dim=0)
    assert float((shares - 0.6).abs().max()) <= 4 * (0.6 * 0.4 / draws) ** 0.5


def test_inputs_are_blanked_where_masked_and_targets_carry_images_and_mask():
    task = PRETEXT_TASKS.get("masked_modelling")()
    images = torch.randn(6, 4, 64, 64, generator=_generator(3)) + 3
    inputs, targets = task.make_batch(images, _generator(4))
    mask = targets[:, -1:]
    assert torch.equal(targets[:, :-1], images) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert bool((inputs[mask.expand_as(inputs) == 1] == 0).all())
    assert torch.equal(inputs[mask.expand_as(inputs) == 0], images[mask.expand_as(images) == 0])
    assert task.label == "MIM" and task.transfers == ("encoder", "decoder")
    assert task.geometry(64) == {"patch_px": 8, "patches": 64, "masked": 38}


def test_the_loss_is_the_mean_absolute_error_on_masked_pixels_only():
    task = MaskedModelling()
    images = torch.zeros(1, 2, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1  # 8 masked pixels x 2 channels
    targets = torch.cat([images, mask], dim=1)
    outputs = torch.zeros(1, 2, 4, 4)
    outputs[..., :2, :] = 0.5  # error 0.5 on every masked pixel
    outputs[..., 2:, :] = 100.0  # unmasked pixels: any output, no loss
    assert float(task.loss(outputs, targets)["loss"]) == pytest.approx(0.5)
    outputs[0, 0, 0, 0] = 2.5  # one masked pixel off by 2 more: (15 * 0.5 + 2.5) / 16
    assert float(task.loss(outputs, targets)["loss"]) == pytest.approx((15 * 0.5 + 2.5) / 16)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mask_ratio": 1.0}, "mask_ratio must lie in \\(0, 1\\), got 1.0"),
        ({"mask_ratio": 0.0}, "mask_ratio must lie in \\(0, 1\\), got 0.0"),
        ({"patch_fraction": 0.75}, "patch_fraction must lie in \\(0, 0.5\\], got 0.75"),
    ],
)
def test_settings_out_of_range_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        MaskedModelling(MaskedModelling.Config(**settings))
