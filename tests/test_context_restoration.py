"""Context restoration (Chen et al. 2019, Algorithm 1): invariants of the disordering and the loss falling on phantoms."""

from __future__ import annotations

import pytest
import torch

from ssl_medbench.datasets.brats import BratsFolder
from ssl_medbench.datasets.patches import PatchSampler
from ssl_medbench.networks import EncoderConfig, UNetDecoder, create_encoder
from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import PretextNetwork
from ssl_medbench.pretext_tasks.context_restoration import (
    ContextRestoration,
    check_patch_pairs_fit,
    disordered_pixels,
    sample_disjoint_patch_pairs,
    swap_patches,
)


def _images(batch: int = 6, channels: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0))


def test_registered_and_transfers_encoder_and_decoder():
    task = PRETEXT_TASKS.get("context_restoration")()
    assert isinstance(task, ContextRestoration)
    assert task.transfers == ("encoder", "decoder") and task.requires_pretraining


def test_patch_pairs_never_overlap_and_stay_inside():
    first, second = sample_disjoint_patch_pairs(
        5000, (20, 24), 6, torch.Generator().manual_seed(1), torch.device("cpu")
    )
    assert ((first - second).abs() >= 6).any(dim=1).all()
    for corner in (first, second):
        assert corner.min() >= 0
        assert (corner[:, 0] <= 20 - 6).all() and (corner[:, 1] <= 24 - 6).all()
        # every position where a patch fits is used, up to the bottom and right edges
        assert set(corner[:, 0].tolist()) == set(range(20 - 6 + 1))
        assert set(corner[:, 1].tolist()) == set(range(24 - 6 + 1))


def test_a_swap_exchanges_exactly_the_two_patches():
    images = _images(batch=2)
    first = torch.tensor([[0, 0], [10, 4]])
    second = torch.tensor([[8, 16], [2, 20]])
    out = swap_patches(images, first, second, 5)
    for b in range(2):
        (r1, c1), (r2, c2) = first[b].tolist(), second[b].tolist()
        assert torch.equal(out[b, :, r1 : r1 + 5, c1 : c1 + 5], images[b, :, r2 : r2 + 5, c2 : c2 + 5])
        assert torch.equal(out[b, :, r2 : r2 + 5, c2 : c2 + 5], images[b, :, r1 : r1 + 5, c1 : c1 + 5])
        untouched = torch.ones(32, 32, dtype=torch.bool)
        untouched[r1 : r1 + 5, c1 : c1 + 5] = False
        untouched[r2 : r2 + 5, c2 : c2 + 5] = False
        assert torch.equal(out[b][:, untouched], images[b][:, untouched])
    # swapping the same pair again undoes the disordering
    assert torch.equal(swap_patches(out, first, second, 5), images)


def test_make_batch_keeps_the_intensity_distribution_per_image_and_targets_the_original():
    task = ContextRestoration(ContextRestoration.Config(iterations=10, patch_size=4))
    images = _images()
    corrupted, targets = task.make_batch(images, torch.Generator().manual_seed(0))
    assert corrupted.shape == images.shape and corrupted.dtype == images.dtype
    assert targets is images
    assert not torch.equal(corrupted, images)
    # all channels move together: each pixel's channel vector is preserved as a multiset per image
    for b in range(images.shape[0]):
        before = sorted(map(tuple, images[b].flatten(1).T.tolist()))
        after = sorted(map(tuple, corrupted[b].flatten(1).T.tolist()))
        assert before == after


def test_make_batch_is_reproducible_per_seed_and_differs_across_seeds():
    task = ContextRestoration()
    images = _images(size=64)
    a, _ = task.make_batch(images, torch.Generator().manual_seed(7))
    b, _ = task.make_batch(images, torch.Generator().manual_seed(7))
    c, _ = task.make_batch(images, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_zero_iterations_is_the_identity():
    images = _images()
    corrupted, targets = ContextRestoration(ContextRestoration.Config(iterations=0)).make_batch(
        images, torch.Generator()
    )
    assert torch.equal(corrupted, images) and torch.equal(targets, images)


def test_disordered_image_is_a_permutation_of_the_input_and_the_target_untouched():
    images = _images(size=64)
    original = images.clone()
    corrupted, targets = ContextRestoration().make_batch(images, torch.Generator().manual_seed(3))
    assert torch.equal(targets, original) and torch.equal(images, original)
    for b in range(images.shape[0]):
        for c in range(images.shape[1]):
            assert torch.equal(corrupted[b, c].flatten().sort().values, original[b, c].flatten().sort().values)


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="iterations"):
        ContextRestoration(ContextRestoration.Config(iterations=-1))
    with pytest.raises(ValueError, match="do not fit"):
        ContextRestoration(ContextRestoration.Config(patch_size=20)).make_batch(_images(size=32), torch.Generator())


def test_pretraining_on_phantoms_lowers_the_restoration_loss(tiny_phantom_root, tmp_path):
    """The paper's premise on our default data: the network learns to restore disordered brain patches."""
    dataset = BratsFolder(BratsFolder.Config(root=str(tiny_phantom_root)), tmp_path)
    dataset.prepare()
    sampler = PatchSampler([dataset.load(s) for s in dataset.split().train], patch_size=32)
    task = ContextRestoration(ContextRestoration.Config(iterations=6, patch_size=4))
    torch.manual_seed(0)
    encoder = create_encoder(EncoderConfig(kwargs={"channels": [8, 16, 32]}), 4)
    decoder = UNetDecoder.for_encoder(encoder)
    network = PretextNetwork(task, encoder, decoder, task.build_head(decoder.out_channels, 4))
    held_out, _ = sampler.sample(16, torch.Generator().manual_seed(123))
    inputs, targets = task.make_batch(held_out, torch.Generator().manual_seed(321))

    def held_out_loss() -> float:
        network.eval()
        with torch.no_grad():
            return float(task.loss(network(inputs), targets)["loss"])

    before = held_out_loss()
    optimiser = torch.optim.Adam(network.parameters(), lr=3e-3)
    generator, corruption = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    network.train()
    for _ in range(40):
        batch, _ = sampler.sample(8, generator)
        corrupted, original = task.make_batch(batch, corruption)
        loss = task.loss(network(corrupted), original)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = held_out_loss()
    assert after < 0.7 * before, (before, after)


def _two_disjoint_squares_fit(patch: int, height: int, width: int) -> bool:
    """Brute force: some two corners of ``patch``-squares inside the image are a full patch apart on an axis."""
    rows, cols = range(height - patch + 1), range(width - patch + 1)
    corners = [(r, c) for r in rows for c in cols]
    return any(abs(r1 - r2) >= patch or abs(c1 - c2) >= patch for r1, c1 in corners for r2, c2 in corners)


def test_fit_check_agrees_with_a_brute_force_placement_search():
    for height in range(1, 9):
        for width in range(1, 9):
            for patch in range(0, 9):
                fits = patch >= 1 and _two_disjoint_squares_fit(patch, height, width)
                try:
                    check_patch_pairs_fit(patch, height, width)
                    accepted = True
                except ValueError:
                    accepted = False
                assert accepted == fits, (patch, height, width)


def test_touching_patches_count_as_disjoint():
    """In a 12x6 image two 6x6 patches fit only stacked edge to edge; they must be drawn, not rejected forever."""
    first, second = sample_disjoint_patch_pairs(50, (12, 6), 6, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert {tuple(sorted(rows)) for rows in zip(first[:, 0].tolist(), second[:, 0].tolist())} == {(0, 6)}
    assert (first[:, 1] == 0).all() and (second[:, 1] == 0).all()


def test_rejection_sampling_gives_up_with_the_sizes_when_placements_are_too_rare():
    """Two 40x40 patches in 80x40 images: 2 of 41 x 41 corner pairs are disjoint, so 1000 rounds often fail."""
    with pytest.raises(RuntimeError, match="disjoint 40x40 patches in 80x40 images"):
        sample_disjoint_patch_pairs(8, (80, 40), 40, torch.Generator().manual_seed(0), torch.device("cpu"))


def test_one_pixel_patches_swap_single_pixels():
    task = ContextRestoration(ContextRestoration.Config(iterations=1, patch_size=1))
    images = _images(batch=4, size=8)
    corrupted, _ = task.make_batch(images, torch.Generator().manual_seed(0))
    assert ((corrupted != images).any(dim=1).sum(dim=(1, 2)) == 2).all()


def test_one_iteration_is_one_swap_of_two_patches():
    """T = 1: exactly two 4x4 patches per image move (pixels are all distinct, so every moved pixel changes)."""
    task = ContextRestoration(ContextRestoration.Config(iterations=1, patch_size=4))
    images = _images(batch=6, size=16)
    corrupted, _ = task.make_batch(images, torch.Generator().manual_seed(0))
    assert ((corrupted != images).any(dim=1).sum(dim=(1, 2)) == 2 * 16).all()


def test_the_pixel_map_and_the_swap_are_made_on_the_images_device():
    """The meta device stands in for an accelerator: nothing may be built on the CPU and mixed in."""
    meta = torch.device("meta")
    first = torch.zeros(2, 2, dtype=torch.long, device=meta)
    source = disordered_pixels(2, (16, 16), [(first, first)], 4, meta)
    assert source.device == meta and source.shape == (2, 256)
    swapped = swap_patches(torch.empty(2, 3, 16, 16, device=meta), first, first, 4)
    assert swapped.device == meta and swapped.shape == (2, 3, 16, 16)
