"""Batch augmentation of the RD+AG baseline: label maps move with their images, intensities change as documented."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from ssl_medbench.datasets.augmentation import AugmentationConfig, BatchAugmentation
from ssl_medbench.pretext_tasks.random_augmentation import RandomAugmentation

OFF = dict(flip=False, rotation_degrees=0.0, scale=0.0, intensity_scale=0.0, intensity_shift=0.0, noise_std=0.0)


def _batch(batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    labels = torch.zeros(batch, 32, 32, dtype=torch.int64)
    labels[:, 4:20, 6:14] = 1
    labels[:, 10:28, 18:30] = 2
    images = torch.randn(batch, 2, 32, 32, generator=generator)
    return images, labels


def test_everything_off_is_the_identity():
    images, labels = _batch()
    out_images, out_labels = BatchAugmentation(AugmentationConfig(**OFF))(images, labels, torch.Generator(), "dense")
    assert torch.equal(out_images, images) and torch.equal(out_labels, labels)


def test_flips_move_image_and_label_map_together_and_all_four_occur():
    images, labels = _batch(64)
    out_images, out_labels = BatchAugmentation(AugmentationConfig(**(OFF | {"flip": True})))(
        images, labels, torch.Generator().manual_seed(1), "dense"
    )
    seen = set()
    for b in range(64):
        for dims in ((), (-1,), (-2,), (-2, -1)):
            flipped = images[b].flip(dims) if dims else images[b]
            if torch.allclose(out_images[b], flipped, atol=1e-5):
                assert torch.equal(out_labels[b], labels[b].flip(dims) if dims else labels[b])
                seen.add(dims)
                break
        else:
            pytest.fail(f"example {b} is not a flip of its input")
    assert seen == {(), (-1,), (-2,), (-2, -1)}


def test_rotation_and_zoom_resample_labels_like_the_image():
    """An image equal to its label map, rotated and zoomed: the nearest-resampled labels match the bilinear image almost everywhere."""
    _, labels = _batch(32)
    images = labels[:, None].float()
    config = AugmentationConfig(**(OFF | {"rotation_degrees": 30.0, "scale": 0.2}))
    out_images, out_labels = BatchAugmentation(config)(images, labels, torch.Generator().manual_seed(2), "dense")
    assert out_labels.dtype == torch.int64 and set(out_labels.unique().tolist()) <= {0, 1, 2}
    assert not torch.equal(out_labels, labels)
    agreement = (out_images[:, 0].round().long() == out_labels).float().mean()
    assert agreement > 0.95


def test_resampled_labels_only_take_values_found_around_their_source_point():
    """Nearest-neighbour label resampling: every output label is a label of one of the four input pixels around the
    point it was sampled from (0 outside the image). Regions 0 and 4 touch, so interpolating labels would invent 1-3."""
    labels = torch.zeros(8, 32, 32, dtype=torch.int64)
    labels[:, :, 16:] = 4
    labels[:, 8:24, 4:12] = 7
    augmentation = BatchAugmentation(AugmentationConfig(**(OFF | {"rotation_degrees": 45.0, "scale": 0.3})))
    _, out = augmentation(torch.zeros(8, 1, 32, 32), labels, torch.Generator().manual_seed(3), "dense")
    theta = augmentation.affine(8, torch.Generator().manual_seed(3), torch.device("cpu"))  # the same draws
    source = F.affine_grid(theta, [8, 1, 32, 32], align_corners=False)
    column, row = ((source[..., 0] + 1) * 32 - 1) / 2, ((source[..., 1] + 1) * 32 - 1) / 2  # pixel coordinates
    padded = F.pad(labels, (1, 1, 1, 1))  # zeros outside, as the resampling pads
    allowed = torch.zeros_like(out, dtype=torch.bool)
    for dr in (0, 1):
        for dc in (0, 1):
            r = (row.floor().long() + dr).clamp(-1, 32) + 1
            c = (column.floor().long() + dc).clamp(-1, 32) + 1
            allowed |= padded[torch.arange(8)[:, None, None], r, c] == out
    assert set(out.unique().tolist()) <= {0, 4, 7} and bool(allowed.all())
    assert not torch.equal(out, labels)


def test_a_right_angle_rotation_moves_labels_exactly(monkeypatch):
    """A rotation by 90 degrees maps pixel centres onto pixel centres: images and labels equal ``rot90`` exactly."""
    images, labels = _batch(4)
    quarter_turn = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]).expand(4, 2, 3)
    augmentation = BatchAugmentation(AugmentationConfig(**(OFF | {"rotation_degrees": 90.0})))
    monkeypatch.setattr(augmentation, "affine", lambda batch, generator, device, dims: quarter_turn)
    out_images, out_labels = augmentation(images, labels, torch.Generator(), "dense")
    turned = [k for k in (1, -1) if torch.equal(out_labels, labels.rot90(k, dims=(-2, -1)))]
    assert len(turned) == 1
    assert torch.allclose(out_images, images.rot90(turned[0], dims=(-2, -1)), atol=1e-5)


def test_intensity_is_an_affine_map_per_example_and_channel_within_the_configured_ranges():
    images, labels = _batch()
    config = AugmentationConfig(**(OFF | {"intensity_scale": 0.1, "intensity_shift": 0.2}))
    out_images, out_labels = BatchAugmentation(config)(images, labels, torch.Generator().manual_seed(3), "dense")
    assert torch.equal(out_labels, labels)
    x, y = images.flatten(2), out_images.flatten(2)
    gain = ((y - y.mean(-1, keepdim=True)) * (x - x.mean(-1, keepdim=True))).sum(-1) / (
        x - x.mean(-1, keepdim=True)
    ).pow(2).sum(-1)
    shift = y.mean(-1) - gain * x.mean(-1)
    assert torch.allclose(y, gain[..., None] * x + shift[..., None], atol=1e-5)
    assert gain.min() >= 0.9 - 1e-6 and gain.max() <= 1.1 + 1e-6 and shift.abs().max() <= 0.2 + 1e-6
    assert gain.std() > 0.01  # differs between examples and channels


def test_noise_has_the_configured_standard_deviation():
    images = torch.zeros(8, 2, 64, 64)
    out, _ = BatchAugmentation(AugmentationConfig(**(OFF | {"noise_std": 0.3})))(
        images, torch.zeros(8), torch.Generator().manual_seed(4), "invariant"
    )
    assert float(out.std()) == pytest.approx(0.3, rel=0.02)


def test_class_label_targets_are_left_alone_and_batches_are_reproducible_per_seed():
    images, _ = _batch()
    classes = torch.arange(16)
    augment = BatchAugmentation(AugmentationConfig())
    state = torch.get_rng_state()
    first = augment(images, classes, torch.Generator().manual_seed(5), "invariant")
    again = augment(images, classes, torch.Generator().manual_seed(5), "invariant")
    other = augment(images, classes, torch.Generator().manual_seed(6), "invariant")
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first[1], classes)
    assert torch.equal(first[0], again[0]) and not torch.equal(first[0], other[0])


@pytest.mark.parametrize(
    "change, message",
    [({"scale": 1.0}, "scale"), ({"noise_std": -0.1}, "noise_std"), ({"rotation_degrees": 200.0}, "rotation_degrees")],
)
def test_bad_augmentation_settings_are_rejected(change, message):
    with pytest.raises(ValueError, match=message):
        RandomAugmentation(RandomAugmentation.Config(**change))


def test_unknown_target_geometry_is_refused():
    images, labels = _batch(2)
    with pytest.raises(ValueError, match="target_geometry"):
        BatchAugmentation(AugmentationConfig())(images, labels, torch.Generator(), "boxes")


def test_random_augmentation_is_a_baseline_that_augments():
    baseline = RandomAugmentation()
    assert baseline.label == "RD+AG" and baseline.transfers == () and not baseline.requires_pretraining
    assert isinstance(baseline.finetune_augmentation(), BatchAugmentation)


def test_sampling_matrices_are_flipped_rotations_and_zooms_about_the_centre_over_the_configured_ranges():
    """``affine``'s (B, 2, 3) matrices map output to input coordinates: no translation, and a rotation by an angle in
    [-30, 30] degrees times a per-axis flip, divided by a zoom in [0.8, 1.2]; all these values occur, both ends of
    each range are approached, and each axis is flipped in some examples and not in others."""
    augmentation = BatchAugmentation(
        AugmentationConfig(**(OFF | {"flip": True, "rotation_degrees": 30.0, "scale": 0.2}))
    )
    theta = augmentation.affine(512, torch.Generator().manual_seed(7), torch.device("cpu")).double()
    assert theta.shape == (512, 2, 3) and torch.equal(theta[:, :, 2], torch.zeros(512, 2, dtype=theta.dtype))
    linear = theta[:, :, :2]
    gram = linear.transpose(1, 2) @ linear  # (R F / zoom)^T (R F / zoom) = I / zoom^2
    zoom = 1 / gram[:, 0, 0].sqrt()
    assert torch.allclose(gram, torch.eye(2, dtype=theta.dtype) / zoom[:, None, None] ** 2, atol=1e-6)
    flips = torch.stack([linear[:, 0, 0].sign(), linear[:, 1, 1].sign()], dim=1)  # cos > 0 for |angle| <= 30 degrees
    angle = torch.atan2(linear[:, 1, 0] * flips[:, 0], linear[:, 0, 0] * flips[:, 0])
    assert torch.allclose(linear[:, 0, 1] * flips[:, 1], -angle.sin() / zoom, atol=1e-6)
    limit = math.radians(30.0)
    assert angle.abs().max() <= limit + 1e-6 and angle.min() < -0.95 * limit and angle.max() > 0.95 * limit
    assert zoom.min() >= 0.8 - 1e-6 and zoom.max() <= 1.2 + 1e-6 and zoom.min() < 0.81 and zoom.max() > 1.19
    for axis in (0, 1):
        assert set(flips[:, axis].tolist()) == {-1.0, 1.0}


def test_gain_and_shift_are_drawn_over_their_whole_ranges():
    """Two-pixel images 0 and 1 read the intensity map off directly: the first pixel becomes the shift, the second
    gain + shift; gains spread over [0.8, 1.2] and shifts over [-0.3, 0.3], around their centres 1 and 0."""
    images = torch.zeros(128, 2, 1, 2)
    images[..., 1] = 1.0
    config = AugmentationConfig(**(OFF | {"intensity_scale": 0.2, "intensity_shift": 0.3}))
    out, _ = BatchAugmentation(config)(images, torch.zeros(128), torch.Generator().manual_seed(8), "invariant")
    shift, gain = out[..., 0].flatten(), (out[..., 1] - out[..., 0]).flatten()
    assert shift.min() >= -0.3 - 1e-6 and shift.max() <= 0.3 + 1e-6 and shift.min() < -0.28 and shift.max() > 0.28
    assert gain.min() >= 0.8 - 1e-6 and gain.max() <= 1.2 + 1e-6 and gain.min() < 0.82 and gain.max() > 1.18
    assert abs(float(shift.mean())) < 0.05 and abs(float(gain.mean()) - 1) < 0.05


def test_rotation_limit_accepts_a_half_turn_and_refuses_more():
    """``rotation_degrees`` may be anything in [0, 180]: 180 is a valid setting, 180.5 is not."""
    AugmentationConfig(rotation_degrees=180.0).check()
    with pytest.raises(ValueError, match="rotation_degrees must be <= 180"):
        AugmentationConfig(rotation_degrees=180.5).check()


def test_augmenting_a_batch_raises_no_warning():
    """Every resampling states its pixel-centre convention, so no torch warning about defaults is emitted on each
    training step (warnings are turned into errors here)."""
    images, labels = _batch(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BatchAugmentation(AugmentationConfig())(images, labels, torch.Generator().manual_seed(9), "dense")


def test_every_draw_and_resampling_happens_on_the_batch_device():
    """The meta device stands in for an accelerator: a flip, angle, zoom, gain, shift or noise tensor built on the
    CPU instead would be mixed into the batch and move it off its device."""
    meta = torch.device("meta")
    images, labels = torch.empty(4, 2, 16, 16, device=meta), torch.empty(4, 16, 16, dtype=torch.long, device=meta)
    for settings in (AugmentationConfig(), AugmentationConfig(flip=False)):  # defaults: every transform, noise too
        out_images, out_labels = BatchAugmentation(settings)(images, labels, torch.Generator(), "dense")
        assert out_images.device == meta and out_labels.device == meta
    assert BatchAugmentation(AugmentationConfig()).affine(4, torch.Generator(), meta).device == meta


def _volumes(batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    labels = torch.zeros(batch, 12, 14, 10, dtype=torch.int64)
    labels[:, 2:7, 3:9, 1:4] = 1
    labels[:, 6:11, 8:13, 5:9] = 2
    return torch.randn(batch, 2, 12, 14, 10, generator=generator), labels


def test_3d_flips_move_volume_and_label_map_together_along_all_three_axes():
    images, labels = _volumes(96)
    out_images, out_labels = BatchAugmentation(AugmentationConfig(**(OFF | {"flip": True})))(
        images, labels, torch.Generator().manual_seed(1), "dense"
    )
    combinations = [dims for size in range(4) for dims in itertools.combinations((-3, -2, -1), size)]
    seen = set()
    for b in range(96):
        for dims in combinations:
            if torch.allclose(out_images[b], images[b].flip(dims) if dims else images[b], atol=1e-5):
                assert torch.equal(out_labels[b], labels[b].flip(dims) if dims else labels[b])
                seen.add(dims)
                break
        else:
            pytest.fail(f"example {b} is not a flip of its input")
    assert seen == set(combinations)


def test_3d_rotation_turns_the_axial_plane_only_and_keeps_each_slice_on_its_slice():
    """A volume whose value is its slice index z: rotated about the z axis, every voxel of the centre of the plane
    (which a rotation keeps inside the field of view) still holds its own z (no slice mixes with another), while the
    in-plane content moves."""
    slices = torch.arange(10, dtype=torch.float32).expand(4, 1, 16, 16, 10).clone()
    stripes = torch.arange(16, dtype=torch.float32)[None, None, :, None, None].expand(4, 1, 16, 16, 10)
    augmentation = BatchAugmentation(AugmentationConfig(**(OFF | {"rotation_degrees": 30.0})))
    labels = torch.zeros(4, 16, 16, 10, dtype=torch.int64)
    rotated, _ = augmentation(slices, labels, torch.Generator().manual_seed(2), "dense")
    centre = (slice(None), slice(None), slice(4, 12), slice(4, 12))
    assert torch.allclose(rotated[centre], slices[centre], atol=1e-4)
    moved, _ = augmentation(stripes, labels, torch.Generator().manual_seed(2), "dense")
    assert not torch.allclose(moved, stripes, atol=1e-2)


def test_3d_intensity_changes_are_per_example_and_channel_and_random_augmentation_has_a_3d_form():
    images, labels = _volumes(4)
    config = OFF | {"intensity_scale": 0.2, "intensity_shift": 0.3}
    out, out_labels = BatchAugmentation(AugmentationConfig(**config))(
        images, labels, torch.Generator().manual_seed(3), "dense"
    )
    assert torch.equal(out_labels, labels)
    for b, c in itertools.product(range(4), range(2)):
        gain = ((out[b, c] - out[b, c].mean()) / (images[b, c] - images[b, c].mean())).median()
        assert torch.allclose(out[b, c], images[b, c] * gain + (out[b, c] - images[b, c] * gain).mean(), atol=1e-4)
    assert RandomAugmentation.build(None, spatial_dims=3).finetune_augmentation() is not None
