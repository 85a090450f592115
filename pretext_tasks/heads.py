"""The classifier head of the patch-classification pretext tasks (relative position, jigsaw, rotation).

Doersch et al. (2015) and Noroozi & Favaro (2016) pass every patch through the same convolutional
trunk and a shared fully connected layer (fc6), concatenate the per-patch vectors in input order,
and classify with two more fully connected layers (fc7, fc8). Here the trunk is the suite's encoder;
its deepest feature map is average-pooled to a fixed ``pooled_size`` x ``pooled_size`` grid (which
keeps coarse layout and makes the head independent of the crop size) before the shared layer; in 3D to a
``pooled_size`` cube.
"""

from __future__ import annotations

import torch
from torch import nn

from ssl_medbench.networks.vgg_encoder import layers_for


class SiameseClassifier(nn.Module):
    """(B, K, F, *spatial) deepest features of K crops per example -> (B, num_classes) logits."""

    def __init__(
        self,
        in_channels: int,
        inputs: int,
        num_classes: int,
        pooled_size: int = 2,
        embedding: int = 256,
        hidden: int = 512,
        spatial_dims: int = 2,
    ):
        super().__init__()
        self.inputs = inputs
        self.pool = layers_for(spatial_dims)[4](pooled_size)
        self.embed = nn.Sequential(nn.Linear(in_channels * pooled_size**spatial_dims, embedding), nn.ReLU(inplace=True))
        self.classify = nn.Sequential(
            nn.Linear(inputs * embedding, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, inputs = features.shape[:2]
        if inputs != self.inputs:
            raise ValueError(f"SiameseClassifier built for {self.inputs} crops per example, got {inputs}")
        pooled = self.pool(features.flatten(0, 1)).flatten(1)
        embedded = self.embed(pooled).unflatten(0, (batch, inputs))
        return self.classify(embedded.flatten(1))
