"""The 3D forms (issue 18): networks, each pretext task's own invariants on volumes, cube sampling from the compact
cache, and sliding-window inference."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
import timm
import torch
from scipy import ndimage

from ssl_medbench.datasets.augmentation import AugmentationConfig, BatchAugmentation
from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.patches import CubeSampler
from ssl_medbench.datasets.views import Cubes
from ssl_medbench.downstream.sliding_window import sliding_window_logits
from ssl_medbench.networks.encoder import EncoderConfig, create_encoder, spatial_dims_of
from ssl_medbench.networks.unet_decoder import UNetDecoder
from ssl_medbench.networks.weights import export_weights, import_weights
from ssl_medbench.pretext_tasks.context_prediction import ContextPrediction
from ssl_medbench.pretext_tasks.context_restoration import ContextRestoration, disordered_pixels
from ssl_medbench.pretext_tasks.jigsaw import Jigsaw
from ssl_medbench.pretext_tasks.masked_modelling import MaskedModelling, random_patch_masks
from ssl_medbench.pretext_tasks.models_genesis import box_masks, shuffle_within_blocks
from ssl_medbench.pretext_tasks.patch_grid import crop_patches, grid_cells
from ssl_medbench.pretext_tasks.permutations import maximal_hamming_permutations, min_hamming_distance
from ssl_medbench.pretext_tasks.relative_position import RelativePosition, neighbour_offsets, sample_pairs
from ssl_medbench.pretext_tasks.rotation import TURNS_3D, Rotation, turned
from ssl_medbench.pretext_tasks.simclr import blurred, random_resized_cuboids
from tests.test_compact_layout import _cached, _subject

CPU = torch.device("cpu")
ENCODER_3D = EncoderConfig(name="chen_vgg3d", kwargs={"channels": [4, 8, 16]})


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _volumes(batch: int = 3, channels: int = 2, side: int = 24) -> torch.Tensor:
    """Volumes whose every voxel value is distinct, so a permutation of voxels can be read back from the values."""
    return torch.arange(batch * channels * side**3, dtype=torch.float32).view(batch, channels, side, side, side)


# networks


def test_chen_vgg3d_is_a_timm_features_only_model_with_3d_stages():
    encoder = timm.create_model("chen_vgg3d", features_only=True, in_chans=4, channels=(4, 8, 16))
    features = encoder(torch.zeros(2, 4, 16, 24, 32))
    assert [tuple(f.shape) for f in features] == [(2, 4, 16, 24, 32), (2, 8, 8, 12, 16), (2, 16, 4, 6, 8)]
    assert encoder.feature_info.reduction() == [1, 2, 4] and spatial_dims_of(encoder) == 3
    assert spatial_dims_of(timm.create_model("chen_vgg", features_only=True, in_chans=1)) == 2
    with pytest.raises(ValueError, match="chen_vgg3d is 3D by its name"):
        timm.create_model("chen_vgg3d", spatial_dims=2)


def test_a_3d_encoder_and_unet_decoder_round_trip_strictly_and_compute_the_same(tmp_path):
    torch.manual_seed(0)
    encoder = create_encoder(ENCODER_3D, 2)
    decoder = UNetDecoder.for_encoder(encoder)
    assert decoder.spatial_dims == 3
    manifest = export_weights(tmp_path, {"encoder": encoder, "decoder": decoder}, ENCODER_3D, 2, {})
    assert manifest["parts"]["decoder"]["architecture"]["spatial_dims"] == 3
    _, encoder_again, decoder_again = import_weights(tmp_path)
    volume = torch.randn(1, 2, 8, 12, 16)
    with torch.no_grad():
        expected = decoder.eval()(encoder.eval()(volume))
        got = decoder_again.eval()(encoder_again.eval()(volume))
    assert torch.equal(expected, got) and got.shape == (1, 4, 8, 12, 16)


# context restoration


def test_3d_context_restoration_moves_voxels_and_only_swaps_whole_cubes():
    task = ContextRestoration.build(ContextRestoration.Config(iterations=3, patch_size=5), spatial_dims=3)
    images = _volumes()
    corrupted, targets = task.make_batch(images, _generator())
    assert targets is images and not torch.equal(corrupted, images)
    for original, shuffled in zip(images, corrupted):
        # a permutation of the original's voxels, every channel moving with its voxel
        assert torch.equal(shuffled.flatten().sort().values, original.flatten().sort().values)
        source = (shuffled[0] - original[0, 0, 0, 0]).long().flatten()
        assert torch.equal((shuffled[1] - original[1, 0, 0, 0]).long().flatten(), source)
    # one swap of two cubes, then the same swap again, is the identity
    first, second = torch.tensor([[0, 0, 0]]), torch.tensor([[10, 3, 7]])
    once = disordered_pixels(1, (24, 24, 24), [(first, second)], 5, CPU)
    moved = (once[0] != torch.arange(24**3)).view(24, 24, 24)
    assert int(moved.sum()) == 2 * 5**3 and bool(moved[:5, :5, :5].all()) and bool(moved[10:15, 3:8, 7:12].all())
    twice = disordered_pixels(1, (24, 24, 24), [(first, second), (first, second)], 5, CPU)
    assert torch.equal(twice[0], torch.arange(24**3))


def test_3d_context_restoration_refuses_cubes_that_cannot_be_disjoint():
    task = ContextRestoration.build(ContextRestoration.Config(patch_size=13), spatial_dims=3)
    with pytest.raises(ValueError, match="two disjoint 13x13x13 patches do not fit in a 24x24x24 image"):
        task.check_image_size(24, 24)


# relative position


def test_3d_relative_position_has_26_classes_one_per_neighbour_and_disjoint_cubes():
    task = RelativePosition.build(None, spatial_dims=3)
    offsets = neighbour_offsets(3)
    assert task.num_classes == 26 == len(set(offsets))
    assert set(offsets) == set(itertools.product((-1, 0, 1), repeat=3)) - {(0, 0, 0)}
    assert len({task.class_name(k) for k in range(26)}) == 26
    grid = task.grid(32, 32)
    corners, labels = sample_pairs(grid, 3000, (32, 32, 32), _generator(), CPU)
    assert set(labels.tolist()) == set(range(26))
    cell_offsets = torch.tensor(offsets)[labels]
    step = grid.patch + grid.gap
    difference = corners[:, 1] - corners[:, 0]
    # each neighbour lies one grid step (within the jitter) from the centre along its offset, never overlapping it
    assert bool(((difference - cell_offsets * step).abs() <= grid.jitter).all())
    assert bool((difference.abs() >= grid.patch).any(dim=1).all())
    images = _volumes(batch=2, side=32)
    inputs, targets = task.make_batch(images, _generator(3))
    corners, expected = sample_pairs(grid, 2, (32, 32, 32), _generator(3), CPU)
    assert torch.equal(targets, expected)
    x, y, z = corners[0, 1].tolist()
    assert torch.equal(inputs[0, 1], images[0, :, x : x + grid.patch, y : y + grid.patch, z : z + grid.patch])


# jigsaw


def test_3d_jigsaw_shuffles_27_cubes_and_the_inverse_permutation_restores_the_grid():
    task = Jigsaw.build(Jigsaw.Config(num_permutations=30, normalise_tiles=False), spatial_dims=3)
    assert task.inputs_per_example == 27 and task.permutations.shape == (30, 27)
    images = _volumes(batch=4, side=32)
    shuffled, labels = task.make_batch(images, _generator(1))
    grid = task.grid(32, 32)
    corners = grid.sample_corners(4, (32, 32, 32), _generator(1), CPU)
    in_order = crop_patches(images, corners, grid.patch)
    assert torch.equal(task.restore(shuffled, labels), in_order)
    cells = torch.tensor(grid_cells(3))
    assert bool((((corners - corners[:, :1]) - cells * (grid.patch + grid.gap)).abs() <= grid.jitter).all())


def test_the_27_tile_permutation_set_is_fixed_starts_with_the_identity_and_is_far_apart():
    permutations = maximal_hamming_permutations(100, 27)
    assert np.array_equal(permutations, maximal_hamming_permutations.__wrapped__(100, 27))
    assert np.array_equal(permutations[0], np.arange(27))
    assert all(sorted(row) == list(range(27)) for row in permutations.tolist())
    assert len({tuple(row) for row in permutations.tolist()}) == 100
    assert min_hamming_distance(permutations) >= 20


# rotation


def test_3d_rotation_has_ten_distinct_classes_each_a_proper_quarter_turn():
    task = Rotation.build(None, spatial_dims=3)
    assert task.num_classes == 10 and task.randomised and task.class_name(0) == "none"
    volume = _volumes(batch=1, side=6)[0]
    turned_volumes = [turned(volume, k) for k in range(10)]
    assert torch.equal(turned_volumes[0], volume)
    assert len({tuple(t.flatten().tolist()) for t in turned_volumes}) == 10
    for k, (axis, turns) in enumerate(TURNS_3D):
        # the kept axis stays: slices across it are turned in their own plane
        rotated = turned_volumes[k]
        for index in range(6):
            original = volume.select(axis + 1, index)
            assert torch.equal(rotated.select(axis + 1, index), torch.rot90(original, turns, dims=(1, 2)))
    inputs, labels = task.make_batch(_volumes(batch=8, side=6), _generator(0))
    assert inputs.shape == (8, 1, 2, 6, 6, 6)
    for example in range(8):
        assert torch.equal(inputs[example, 0], turned(_volumes(batch=8, side=6)[example], int(labels[example])))
    with pytest.raises(ValueError, match="needs square images or cubes, got 6x6x8"):
        task.make_batch(torch.zeros(1, 1, 6, 6, 8), _generator())


# masked modelling, context prediction, Models Genesis, SimCLR


def test_3d_masked_modelling_masks_the_stated_share_of_whole_cubes():
    masks = random_patch_masks(20, (16, 16, 16), 4, 0.6, _generator(), CPU)
    cells = masks[:, 0, ::4, ::4, ::4]
    assert bool((cells.flatten(1).sum(dim=1) == round(0.6 * 64)).all())
    assert torch.equal(masks[:, 0], cells.repeat_interleave(4, 1).repeat_interleave(4, 2).repeat_interleave(4, 3))
    task = MaskedModelling.build(None, spatial_dims=3)
    inputs, targets = task.make_batch(torch.ones(2, 3, 16, 16, 16), _generator())
    assert torch.equal(inputs, 1 - targets[:, 3:].expand(-1, 3, -1, -1, -1))
    assert task.geometry(32)["patches"] == 8**3


def test_3d_context_prediction_removes_a_centred_cube_or_random_cubes():
    central = ContextPrediction.build(ContextPrediction.Config(mask="central", central_fraction=0.5), spatial_dims=3)
    mask = central.removed_region(2, (16, 16, 16), _generator(), CPU)
    expected = torch.zeros(16, 16, 16, dtype=torch.bool)
    expected[4:12, 4:12, 4:12] = True
    assert torch.equal(mask[0], expected) and torch.equal(mask[1], expected)
    single = ContextPrediction.build(ContextPrediction.Config(blocks=1, block_fraction=0.25), spatial_dims=3)
    masks = single.removed_region(200, (16, 20, 24), _generator(2), CPU)
    for removed in masks:
        where = removed.nonzero()
        low, high = where.min(dim=0).values, where.max(dim=0).values
        assert torch.equal(high - low + 1, torch.tensor([4, 4, 4])) and int(removed.sum()) == 64


def test_3d_models_genesis_shuffles_voxels_within_cuboid_blocks_and_paints_cuboids():
    images = _volumes(batch=1, channels=1, side=12)
    sides, offsets = torch.tensor([[3, 4, 6]]), torch.tensor([[0, 0, 0]])
    shuffled = shuffle_within_blocks(images, sides, offsets, _generator())
    assert not torch.equal(shuffled, images)
    for x, y, z in itertools.product(range(0, 12, 3), range(0, 12, 4), range(0, 12, 6)):
        block = (0, 0, slice(x, x + 3), slice(y, y + 4), slice(z, z + 6))
        assert torch.equal(shuffled[block].flatten().sort().values, images[block].flatten().sort().values)
    masks = box_masks(50, (14, 21, 28), (1 / 6, 1 / 3), _generator(1), CPU)
    for box in masks.flatten(0, 1):
        where = box.nonzero()
        extent = where.max(dim=0).values - where.min(dim=0).values + 1
        assert int(box.sum()) == int(extent.prod())  # a solid cuboid
        assert bool((extent >= torch.tensor([2, 3, 4])).all() and (extent <= torch.tensor([4, 7, 9])).all())


def test_3d_blur_is_scipys_gaussian_filter():
    volumes = torch.randn(2, 3, 10, 11, 12, generator=_generator())
    expected = ndimage.gaussian_filter(volumes.numpy(), sigma=(0, 0, 1, 1, 1), truncate=2.0, mode="nearest")
    assert np.allclose(blurred(volumes, 1.0).numpy(), expected, atol=1e-5)


def test_a_whole_volume_cuboid_is_the_volume_or_its_left_right_mirror():
    """A share of 1 fits only as the whole volume (any other side ratio leaves it), so every crop is the volume,
    flipped along X (left-right in RAS+ volumes) about half of the times, never along Y or Z."""
    volumes = torch.randn(64, 1, 6, 7, 8, generator=_generator())
    crops = random_resized_cuboids(volumes, (1.0, 1.0), _generator(4))
    flipped = [torch.allclose(crop, volume.flip(1), atol=1e-5) for crop, volume in zip(crops, volumes)]
    kept = [torch.allclose(crop, volume, atol=1e-5) for crop, volume in zip(crops, volumes)]
    assert all(f != k for f, k in zip(flipped, kept)) and 16 < sum(flipped) < 48


def test_cuboid_crops_keep_the_share_they_draw():
    """A volume whose voxels count 1: the crop of a share s resamples a cuboid of s of the volume, so a ramp along
    each axis keeps the product of the extents it spans equal to s (between the scale's bounds)."""
    side = 40
    ramps = [torch.linspace(0, 1, side).view(*(side if a == axis else 1 for a in range(3))) for axis in range(3)]
    volumes = torch.stack([ramp.expand(side, side, side) for ramp in ramps])[None].repeat(200, 1, 1, 1, 1)
    crops = random_resized_cuboids(volumes, (0.35, 0.8), _generator(5))
    extents = torch.stack(
        [crops[:, axis].amax(dim=(1, 2, 3)) - crops[:, axis].amin(dim=(1, 2, 3)) for axis in range(3)], dim=1
    )
    shares = extents.prod(dim=1)
    assert bool((shares > 0.35 * 0.9).all() and (shares < 0.8 * 1.05).all())


# cube sampling


def test_cubes_are_the_volume_region_around_their_centre_shifted_inside_and_padded_with_zeros():
    images, labels = _subject()
    volume = Volume("s", images, labels, (1.0, 1.0, 2.0))
    sampler = CubeSampler([volume], 16, foreground_fraction=1.0)
    picks = sampler.draw(20, _generator())
    cubes, cube_labels = sampler.read(picks)
    assert cubes.shape == (20, 4, 16, 16, 16) and cube_labels.shape == (20, 16, 16, 16)
    for index, (_, (x, y, z)) in enumerate(picks):
        assert labels[x, y, z] > 0  # centred on the tumour
        x0, y0 = min(max(x - 8, 0), 30 - 16), min(max(y - 8, 0), 26 - 16)
        assert np.array_equal(cubes[index, :, :, :, :12].numpy(), images[:, x0 : x0 + 16, y0 : y0 + 16, :])
        assert not cubes[index, :, :, :, 12:].any()  # the volume has 12 slices: the rest of the cube is zeros
        assert np.array_equal(cube_labels[index, :, :, :12].numpy(), labels[x0 : x0 + 16, y0 : y0 + 16, :])


def test_cubes_from_the_compact_cache_are_read_slab_by_slab_and_equal_the_plain_cubes(tmp_path, monkeypatch):
    from ssl_medbench.datasets.compact_layout import StoredArray

    images, labels = _subject(shape=(40, 36, 30))
    plain = CubeSampler([Volume("s", images, labels, (1.0, 1.0, 2.0))], 16, foreground_fraction=0.5)
    cached = CubeSampler([_cached(tmp_path, images, labels)], 16, foreground_fraction=0.5)

    def whole_volume(*_):
        raise AssertionError("a cube read the whole volume")

    monkeypatch.setattr(StoredArray, "__array__", whole_volume)
    for seed in range(3):
        expected = plain.sample(6, _generator(seed))
        got = cached.sample(6, _generator(seed))
        assert all(torch.equal(a, b) for a, b in zip(expected, got))


def test_the_cube_view_pretrains_on_unlabelled_cubes_of_its_side():
    images, labels = _subject()
    view = Cubes(16)
    assert view.name == "cubes@16" and view.spatial_dims == 3 and view.describe((4, 16, 16, 16)) == "cubes@16"
    sampler = view.unlabelled_sampler([Volume("s", images, labels, (1.0, 1.0, 2.0))])
    relabelled = view.unlabelled_sampler([Volume("s", images, np.zeros_like(labels), (1.0, 1.0, 2.0))])
    assert torch.equal(sampler.sample(4, _generator())[0], relabelled.sample(4, _generator())[0])


# sliding-window inference


def test_sliding_window_equals_whole_volume_inference_where_the_volume_fits_one_window():
    torch.manual_seed(0)
    encoder = create_encoder(ENCODER_3D, 2)
    from ssl_medbench.downstream.segmentation import SegmentationUNet

    model = SegmentationUNet(encoder, UNetDecoder.for_encoder(encoder), 4).eval()
    volume = np.random.default_rng(0).normal(size=(2, 16, 16, 16)).astype(np.float32)
    with torch.no_grad():
        whole = model(torch.from_numpy(volume)[None])[0]
        windowed = sliding_window_logits(model, volume, 16, 2, CPU)
    assert windowed.shape == whole.shape and torch.allclose(windowed, whole, atol=1e-5)


def test_overlapping_windows_are_averaged_as_worked_out_by_hand():
    """Windows of 8 voxels with half overlap along a 12-voxel axis start at 0 and 4; a predictor that answers each
    window with its first voxel's value gives 0 on 0-3, the mean of 0 and 4 on 4-7, and 4 on 8-11."""
    volume = np.broadcast_to(np.arange(12, dtype=np.float32), (1, 8, 8, 12)).copy()

    def first_voxel(windows: torch.Tensor) -> torch.Tensor:
        return windows[..., :1].expand_as(windows).clone()

    blended = sliding_window_logits(first_voxel, volume, 8, 4, CPU, blend="constant")[0]
    expected = torch.tensor([0.0] * 4 + [2.0] * 4 + [4.0] * 4)
    assert torch.equal(blended[3, 5], expected) and torch.equal(blended, expected.expand(8, 8, 12))


def test_a_volume_smaller_than_a_window_is_padded_and_cropped_back():
    volume = np.ones((1, 5, 6, 7), np.float32)
    logits = sliding_window_logits(lambda windows: windows * 2, volume, 8, 1, CPU)
    assert logits.shape == (1, 5, 6, 7) and torch.allclose(logits, torch.full((1, 5, 6, 7), 2.0))
    with pytest.raises(ValueError, match=r"overlap must lie in \[0, 1\), got 1.0"):
        sliding_window_logits(lambda windows: windows, volume, 8, 1, CPU, overlap=1.0)


# pinned details (each caught a planted bug the tests above let through)


def test_the_permutation_sets_are_pinned_so_a_changed_selection_rule_shows():
    """The greedy rule's tie weights or the 3D candidate pool can change the set while keeping its minimum distance:
    pin both sets (2D: unchanged since the 2D suite's first release)."""
    pinned = {
        9: "445417e7e25bdf9dc841b1e2382ca90c4305b3e82b5f4d3a911ff5da06b49fc7",
        27: "785c7a9b9bc16d2052a9819962c82435b511b782978266b358786fce49f86fcf",
    }
    for tiles, digest in pinned.items():
        assert hashlib.sha256(maximal_hamming_permutations(100, tiles).tobytes()).hexdigest() == digest


def test_the_ten_3d_rotation_classes_are_in_their_documented_order_and_all_drawn():
    assert TURNS_3D == ((0, 0), *((axis, turns) for axis in range(3) for turns in (1, 2, 3)))
    task = Rotation.build(None, spatial_dims=3)
    assert task.class_name(4) == "90 deg about axis 1" and task.class_name(9) == "270 deg about axis 2"
    _, labels = task.make_batch(torch.zeros(300, 1, 2, 2, 2), _generator(1))
    assert set(labels.tolist()) == set(range(10))


def test_3d_geometry_reports_volume_shares():
    task = ContextRestoration.build(None, spatial_dims=3)
    assert task.geometry(16)["moved_share_max"] == round(2 * 10 * 8**3 / 16**3, 3)
    assert ContextPrediction.build(None, spatial_dims=3).geometry(32)["removed_share_max"] == round(4 * 8**3 / 32**3, 3)


def test_3d_painted_boxes_reach_every_face_of_the_volume():
    masks = box_masks(400, (12, 12, 12), (1 / 6, 1 / 3), _generator(2), CPU).flatten(0, 1)
    for axis in range(3):
        others = tuple(a + 1 for a in range(3) if a != axis)
        touched = masks.any(dim=others)  # (boxes, 12) along the axis
        assert bool(touched[:, 0].any()) and bool(touched[:, 11].any())


def test_cubes_off_the_tumour_are_centred_inside_the_brain_box_on_every_axis():
    images = np.zeros((1, 20, 20, 10), np.float32)
    images[0, 5:15, 6:12, 4] = 1.0  # a brain on one axial slice
    sampler = CubeSampler([Volume("s", images, np.zeros((20, 20, 10), np.uint8), (1.0, 1.0, 1.0))], 8)
    centres = np.array([centre for _, centre in sampler.draw(300, _generator())])
    assert set(centres[:, 2]) == {4}
    assert set(centres[:, 0]) == set(range(5, 15)) and set(centres[:, 1]) == set(range(6, 12))


def test_3d_augmentation_zooms_all_three_axes_alike():
    augmentation = BatchAugmentation(AugmentationConfig(flip=True, rotation_degrees=20.0, scale=0.2))
    theta = augmentation.affine(64, _generator(3), CPU, spatial_dims=3)
    linear = theta[:, :, :3]
    gram = linear.transpose(1, 2) @ linear
    assert torch.allclose(gram, gram[:, :1, :1] * torch.eye(3), atol=1e-5)
    assert not torch.allclose(gram[:, 0, 0], torch.ones(64))  # zoomed, not only rotated


def test_sliding_windows_tile_with_the_configured_overlap_and_gaussian_weights():
    seen = []

    def counting(windows: torch.Tensor) -> torch.Tensor:
        seen.append(windows.shape[0])
        return windows

    sliding_window_logits(counting, np.zeros((1, 16, 16, 16), np.float32), 8, 1, CPU, overlap=0.0)
    assert sum(seen) == 8  # 2 x 2 x 2 windows side by side
    seen.clear()
    sliding_window_logits(counting, np.zeros((1, 16, 16, 16), np.float32), 8, 1, CPU)
    assert sum(seen) == 27  # half-window overlap: starts 0, 4, 8 on each axis
    volume = np.broadcast_to(np.arange(12, dtype=np.float32), (1, 8, 8, 12)).copy()
    blended = sliding_window_logits(lambda w: w[..., :1].expand_as(w).clone(), volume, 8, 4, CPU)[0, 4, 4]
    # sigma an eighth of the window: each voxel follows the window whose centre is nearer, almost entirely
    assert float(blended[4]) < 0.1 and float(blended[7]) > 3.9
