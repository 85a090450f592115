"""Auto-encoder (Bengio et al. 2007): the target is the input itself."""

from __future__ import annotations

import torch

from ssl_medbench.pretext_tasks.autoencoder import AutoEncoder


def test_input_equals_target_and_is_the_uncorrupted_image():
    images = torch.randn(4, 4, 32, 32)
    inputs, targets = AutoEncoder().make_batch(images, torch.Generator().manual_seed(0))
    assert torch.equal(inputs, images) and torch.equal(targets, images)
    assert AutoEncoder().transfers == ("encoder", "decoder") and not AutoEncoder.randomised


def test_loss_is_the_mean_squared_error():
    targets = torch.zeros(2, 1, 4, 4)
    outputs = torch.full((2, 1, 4, 4), 3.0)
    assert float(AutoEncoder().loss(outputs, targets)["loss"]) == 9.0
