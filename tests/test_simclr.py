"""simclr: the NT-Xent loss against an independent implementation, the two views of a pair, and the augmentations."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.simclr import SimCLR, blurred, nt_xent, random_resized_crops


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _nt_xent_by_loop(embeddings: torch.Tensor, temperature: float) -> float:
    """Chen et al. 2020, eq. (1), one view at a time: -log(exp(sim(i, partner) / t) / sum over k != i exp(sim(i, k) / t))."""
    batch = embeddings.shape[0]
    views = [embeddings[b, v] for v in range(2) for b in range(batch)]
    total = 0.0
    for i, z_i in enumerate(views):
        partner = (i + batch) % (2 * batch)
        cosine = [float(torch.dot(z_i, z_k) / (z_i.norm() * z_k.norm())) for z_k in views]
        denominator = sum(math.exp(cosine[k] / temperature) for k in range(2 * batch) if k != i)
        total += -math.log(math.exp(cosine[partner] / temperature) / denominator)
    return total / (2 * batch)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_equals_the_papers_formula_view_by_view(temperature: float):
    embeddings = torch.randn(5, 2, 7, generator=_generator(1), dtype=torch.float64)
    loss, _ = nt_xent(embeddings, temperature)
    assert float(loss) == pytest.approx(_nt_xent_by_loop(embeddings, temperature), rel=1e-9)


def test_nt_xent_by_hand_and_its_pair_accuracy():
    """Two images, identical views per image, orthogonal across images: each view's partner has cosine 1, the two
    others 0; loss -log(e^2 / (e^2 + 2)) at temperature 0.5, and every partner is found."""
    embeddings = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])
    loss, accuracy = nt_xent(embeddings, 0.5)
    assert float(loss) == pytest.approx(-math.log(math.e**2 / (math.e**2 + 2)))
    assert float(accuracy) == 1.0
    swapped = embeddings.clone()
    swapped[:, 1] = embeddings.flip(0)[:, 1]  # each view's partner is now the other image's direction
    assert float(nt_xent(swapped, 0.5)[1]) == 0.0


def test_the_two_views_come_from_the_same_image_and_differ():
    """Constant images of different values: without intensity jitter or noise every view of image b is still b (crops,
    flips and blur keep a constant); on real images the two views differ."""
    task = SimCLR(SimCLR.Config(intensity_jitter=0.0, noise_std=0.0))
    constants = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 2, 32, 32).contiguous()
    views, targets = task.make_batch(constants, _generator(2))
    assert views.shape == (6, 2, 2, 32, 32) and torch.equal(targets, torch.arange(6))
    assert torch.allclose(views, constants[:, None].expand_as(views), atol=1e-5)
    images = torch.randn(6, 2, 32, 32, generator=_generator(3))
    views, _ = PRETEXT_TASKS.get("simclr")().make_batch(images, _generator(4))
    assert bool(((views[:, 0] - views[:, 1]).abs().flatten(1).amax(dim=1) > 0.1).all())


def test_crops_keep_their_share_of_the_image_and_half_of_them_are_flipped():
    """On a left-to-right ramp from -1 to 1, a crop of area 0.35 and aspect ratio 3/4 to 4/3 spans sqrt(0.35 * aspect)
    of the width; flipped crops run right to left, about half of 400."""
    ramp = torch.linspace(-1, 1, 64).expand(1, 1, 64, 64).repeat(400, 1, 1, 1).contiguous()
    crops = random_resized_crops(ramp, (0.35, 0.35), _generator(7))
    rows = crops[:, 0, 32]
    span = rows.amax(dim=1) - rows.amin(dim=1)
    low, high = 2 * math.sqrt(0.35 * 3 / 4), 2 * math.sqrt(0.35 * 4 / 3)
    assert float(span.min()) >= low * 0.95 and float(span.max()) <= high * 1.02
    flipped = rows[:, 0] > rows[:, -1]
    assert abs(float(flipped.float().mean()) - 0.5) <= 4 * (0.25 / 400) ** 0.5


def test_the_blur_keeps_the_mean_and_smooths():
    images = torch.randn(2, 3, 20, 20, generator=_generator(8))
    smooth = blurred(images, 1.0)
    assert smooth.shape == images.shape and float(smooth.std()) < float(images.std())
    assert torch.allclose(blurred(torch.ones(1, 1, 9, 9), 1.0), torch.ones(1, 1, 9, 9))


def test_only_the_encoder_transfers_and_bad_settings_are_refused():
    task = PRETEXT_TASKS.get("simclr")()
    assert task.transfers == ("encoder",) and task.label == "CL" and task.geometry(64) == {"min_crop_px": 38}
    with pytest.raises(ValueError, match="temperature must be > 0, got 0.0"):
        SimCLR(SimCLR.Config(temperature=0.0))
    with pytest.raises(ValueError, match="min_crop_fraction must lie in \\(0, 1\\], got 1.5"):
        SimCLR(SimCLR.Config(min_crop_fraction=1.5))
