"""The example plugin tested the way every third-party pretext task can be: the suite's shipped contract, plus its own invariants."""

from __future__ import annotations

import pytest
import torch
from ssl_medbench_rotation import RotationPrediction

from ssl_medbench.pretext_tasks.contract import PRETEXT_CHECKS, ContractSetup


@pytest.mark.parametrize("check", sorted(PRETEXT_CHECKS))
def test_meets_the_ssl_medbench_contract(check):
    PRETEXT_CHECKS[check](RotationPrediction, ContractSetup())


def test_rotating_back_by_the_label_restores_the_image():
    images = torch.randn(32, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    inputs, labels = RotationPrediction().make_batch(images, torch.Generator().manual_seed(1))
    assert set(labels.tolist()) == {0, 1, 2, 3}
    for b in range(32):
        assert torch.equal(torch.rot90(inputs[b, 0], -int(labels[b]), dims=(-2, -1)), images[b])


def test_non_square_images_are_refused():
    with pytest.raises(ValueError, match="square"):
        RotationPrediction().check_image_size(64, 32)
