"""Auto-encoder (Bengio et al. 2007): the target is the input itself, reconstructed through the bottleneck."""

from __future__ import annotations

import torch

from ssl_medbench.networks.encoder import EncoderConfig, create_encoder
from ssl_medbench.pretext_tasks.autoencoder import AutoEncoder, AutoEncoderWithSkips
from ssl_medbench.pretext_tasks.base import PretextNetwork


def test_input_equals_target_and_is_the_uncorrupted_image():
    images = torch.randn(4, 4, 32, 32)
    inputs, targets = AutoEncoder().make_batch(images, torch.Generator().manual_seed(0))
    assert torch.equal(inputs, images) and torch.equal(targets, images)
    assert AutoEncoder().transfers == ("encoder", "decoder") and not AutoEncoder.randomised


def test_loss_is_the_mean_squared_error():
    targets = torch.zeros(2, 1, 4, 4)
    outputs = torch.full((2, 1, 4, 4), 3.0)
    assert float(AutoEncoder().loss(outputs, targets)["loss"]) == 9.0


def _trained_loss(task: AutoEncoder, steps: int = 60) -> float:
    """The loss on fresh noise after ``steps`` Adam steps on one batch of noise: noise cannot be learnt, so only a
    network that copies its input reconstructs noise it has never seen."""
    torch.manual_seed(0)
    encoder = create_encoder(EncoderConfig(kwargs={"channels": [8, 16, 32]}), 1)
    network = PretextNetwork.for_task(task, encoder, 1)
    images = torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-2)
    for _ in range(steps):
        inputs, targets = task.make_batch(images, torch.Generator())
        loss = task.loss(network(inputs), targets)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    unseen = torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    network.eval()
    with torch.no_grad():
        return float(task.loss(network(unseen), unseen)["loss"])


def test_the_auto_encoder_cannot_copy_its_input_through_the_skip_connections():
    """With skips, the U-Net learns to copy noise (near-zero loss); without them, the bottleneck cannot hold it."""
    unet = AutoEncoder.Config(decoder="unet")
    withheld, kept = _trained_loss(AutoEncoder(unet)), _trained_loss(AutoEncoderWithSkips(unet))
    assert kept < 0.25 * withheld
    assert withheld > 0.5  # unseen noise of variance 1 through the bottleneck: little better than predicting zeros
    assert AutoEncoderWithSkips.label == "AE-skip" and AutoEncoder.label == "AE"
