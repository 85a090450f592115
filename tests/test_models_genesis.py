"""models_genesis: each transformation's invariants, its probability over many draws, and the task's batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.models_genesis import (
    CURVE_POINTS,
    MAX_BOXES,
    NEXT_BOX_PROBABILITY,
    ModelsGenesis,
    apply_tables,
    bezier_curves,
    box_masks,
    drawn_boxes,
    intensity_mapping,
    lookup_tables,
    nonlinear_intensity,
    painted,
    shuffle_within_blocks,
)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _within(share: float, expected: float, draws: int) -> bool:
    """``share`` of ``draws`` Bernoulli(``expected``) trials lies within 4 standard errors of ``expected``."""
    return abs(share - expected) <= 4 * (expected * (1 - expected) / draws) ** 0.5


def test_local_shuffling_permutes_pixels_within_their_blocks_only():
    """Unique pixel values: each output pixel comes from its own block (3 x 2 blocks, tiling shifted by (1, 0)), every
    block keeps its values, both channels move together, and something moved."""
    height, width = 9, 8
    values = torch.arange(height * width, dtype=torch.float32).reshape(1, 1, height, width)
    images = torch.cat([values, 10 * values], dim=1)
    sides, offsets = torch.tensor([[3, 2]]), torch.tensor([[1, 0]])
    shuffled = shuffle_within_blocks(images, sides, offsets, _generator())
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    block = ((rows + 1) // 3) * 100 + cols // 2
    source = shuffled[0, 0].long().numpy()
    assert np.array_equal(block.ravel()[source.ravel()], block.ravel())
    for tile in np.unique(block):
        assert sorted(source[block == tile].tolist()) == sorted(np.flatnonzero(block.ravel() == tile).tolist())
    assert torch.equal(shuffled[0, 1], 10 * shuffled[0, 0]) and not torch.equal(shuffled, images)
    one_pixel_blocks = shuffle_within_blocks(images, torch.tensor([[1, 1]]), offsets, _generator())
    assert torch.equal(one_pixel_blocks, images)


def test_bezier_curves_run_from_0_0_to_1_1_and_the_mapping_is_monotonic():
    x, y = bezier_curves(200, _generator(), torch.device("cpu"))
    assert torch.allclose(x[:, 0], torch.zeros(200)) and torch.allclose(y[:, -1], torch.ones(200))
    decreasing = torch.arange(200) % 2 == 0
    xs, ys = intensity_mapping(x, y, decreasing)
    assert bool((xs.diff(dim=1) >= 0).all())
    assert bool((ys[~decreasing].diff(dim=1) >= 0).all())
    assert torch.allclose(ys[decreasing, 0], torch.ones(100)) and torch.allclose(ys[decreasing, -1], torch.zeros(100))


def test_the_lookup_table_is_numpy_interp_at_its_grid_points_and_linear_between():
    x, y = bezier_curves(4, _generator(1), torch.device("cpu"))
    xs, ys = intensity_mapping(x, y, torch.tensor([False, True, False, True]))
    tables = lookup_tables(xs, ys)
    grid = torch.linspace(0, 1, CURVE_POINTS)
    for image in range(4):
        expected = np.interp(grid.numpy(), xs[image].numpy(), ys[image].numpy())
        assert np.allclose(tables[image].numpy(), expected, atol=1e-5)
    halfway = (grid[:-1] + grid[1:]) / 2
    mapped = apply_tables(halfway.expand(4, -1), tables)
    assert torch.allclose(mapped, (tables[:, :-1] + tables[:, 1:]) / 2, atol=1e-6)


def test_the_nonlinear_transformation_keeps_each_images_range_and_intensity_order():
    """Per image and channel: minimum and maximum are kept (the curve ends at (0, 0) and (1, 1)), and the order of the
    intensities is kept or reversed as a whole."""
    images = torch.rand(32, 2, 16, 16, generator=_generator(2)) * 5 - 1
    mapped = nonlinear_intensity(images, _generator(3))
    flat_in, flat_out = images.flatten(2), mapped.flatten(2)
    low, high = flat_in.amin(dim=2), flat_in.amax(dim=2)
    out_low, out_high = flat_out.amin(dim=2), flat_out.amax(dim=2)
    assert torch.allclose(out_low, low, atol=1e-4) and torch.allclose(out_high, high, atol=1e-4)
    order = flat_in.argsort(dim=2)
    steps = flat_out.gather(2, order).diff(dim=2)
    increasing, decreasing = (steps >= -1e-5).all(dim=2), (steps <= 1e-5).all(dim=2)
    assert bool((increasing | decreasing).all())
    assert bool(increasing[:, 0].any()) and bool(decreasing[:, 0].any())
    assert bool((increasing[:, 0] == increasing[:, 1]).all())  # one curve per image, on every channel


def test_boxes_have_their_sides_and_lie_inside_the_image():
    masks = box_masks(500, (42, 35), (1 / 6, 1 / 3), _generator(4), torch.device("cpu"))
    assert masks.shape == (500, MAX_BOXES, 42, 35)
    heights, widths = masks.any(dim=3).sum(dim=2), masks.any(dim=2).sum(dim=2)
    assert int(heights.min()) >= 42 // 6 and int(heights.max()) <= 42 // 3 + 1
    assert int(widths.min()) >= 35 // 6 and int(widths.max()) <= 35 // 3 + 1
    assert bool((masks.sum(dim=(2, 3)) == heights * widths).all())  # each mask is one rectangle


def test_each_next_box_is_drawn_with_probability_095():
    draws = 20000
    drawn = drawn_boxes(draws, _generator(5), torch.device("cpu"), first_always=False)
    assert bool((drawn.long().diff(dim=1) <= 0).all())  # a box only after the one before it
    for k in range(MAX_BOXES):
        assert _within(float(drawn[:, k].float().mean()), NEXT_BOX_PROBABILITY ** (k + 1), draws)
    first = drawn_boxes(draws, _generator(6), torch.device("cpu"), first_always=True)
    assert bool(first[:, 0].all()) and _within(float(first[:, 4].float().mean()), NEXT_BOX_PROBABILITY**4, draws)


def test_painting_puts_noise_in_the_images_range_inside_or_outside_its_boxes():
    """Out-painting keeps at least one box of 3/7 of each side; in-painting changes at most five boxes of a third of
    each side; the noise stays within each image and channel's range."""
    images = torch.rand(64, 2, 28, 28, generator=_generator(7)) + 2
    outpaint = torch.arange(64) % 2 == 0
    result = painted(images, outpaint, _generator(8))
    changed = (result != images).any(dim=1)
    kept = (~changed).sum(dim=(1, 2))
    assert bool((kept[outpaint] >= (28 * 3 // 7) ** 2).all())
    assert bool((changed[~outpaint].sum(dim=(1, 2)) <= MAX_BOXES * (28 // 3 + 1) ** 2).all())
    low, high = images.amin(dim=(2, 3), keepdim=True), images.amax(dim=(2, 3), keepdim=True)
    assert bool(((result >= low) & (result <= high)).all())


def test_each_transformation_happens_with_its_probability_and_only_then():
    """Over 4000 images: shuffled 0.5, non-linear 0.9, painted 0.9, out-painted 0.8 of the painted, and an image that
    drew none of them is returned unchanged."""
    draws = 4000
    task = ModelsGenesis()
    images = torch.rand(draws, 1, 16, 16, generator=_generator(9))
    corrupted, applied = task.corrupt(images, _generator(10))
    shares = {name: float(flags.float().mean()) for name, flags in applied.items()}
    assert _within(shares["shuffled"], 0.5, draws) and _within(shares["nonlinear"], 0.9, draws)
    assert _within(shares["painted"], 0.9, draws)
    painted_count = int(applied["painted"].sum())
    assert _within(float(applied["outpainted"].sum()) / painted_count, 0.8, painted_count)
    untouched = ~(applied["shuffled"] | applied["nonlinear"] | applied["painted"])
    assert int(untouched.sum()) > 0 and torch.equal(corrupted[untouched], images[untouched])
    # a transformed image can come out unchanged (1 x 1 blocks, an in-painting that drew no box), but rarely
    changed = (corrupted[~untouched] != images[~untouched]).flatten(1).any(dim=1)
    assert float(changed.float().mean()) > 0.97


def test_the_batch_restores_the_original_images():
    task = PRETEXT_TASKS.get("models_genesis")()
    images = torch.randn(4, 3, 32, 32, generator=_generator(11))
    inputs, targets = task.make_batch(images, _generator(12))
    assert targets is images and inputs.shape == images.shape and not torch.equal(inputs, images)
    assert task.label == "MG" and task.transfers == ("encoder", "decoder")
    assert task.geometry(64) == {"max_block_px": 6, "inpaint_box_max_px": 21, "outpaint_kept_box_min_px": 27}


@pytest.mark.parametrize("name", ["local_shuffle_probability", "nonlinear_probability", "paint_probability"])
def test_probabilities_outside_0_1_are_refused(name: str):
    with pytest.raises(ValueError, match=f"{name} must lie in \\[0, 1\\], got 1.5"):
        ModelsGenesis(ModelsGenesis.Config(**{name: 1.5}))
    with pytest.raises(ValueError, match="6x40 is too small"):
        ModelsGenesis().check_image_size(6, 40)
