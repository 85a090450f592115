"""SonoNet-style classifiers around the shared encoder (Baumgartner et al. 2017; de Vos et al. 2017).

SonoNet-64 is a VGG-like feature extractor followed by "adaptation layers" (1x1 convolutions down to
one map per class) and global average pooling, so that every class map stays spatially meaningful.
Here the feature extractor is the suite's encoder (so pretext weights transfer); the adaptation
layers are a 1x1 conv to half the width + batch-norm + ReLU, then a 1x1 conv to one channel per class
+ batch-norm, averaged over the image. de Vos et al.'s localisation network has one more conv+pool
stack before the adaptation layers (``extra_stacks=1``), which starts from random weights.
"""

from __future__ import annotations

import torch
from torch import nn

from ssl_medbench.networks.vgg_encoder import _conv_unit


class SonoNetClassifier(nn.Module):
    """Encoder -> ``extra_stacks`` x (max-pool + two conv units) -> adaptation layers -> global average pooling -> logits."""

    def __init__(self, encoder: nn.Module, num_classes: int, extra_stacks: int = 0):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"a classifier needs at least one class, got {num_classes}")
        self.encoder = encoder
        width = encoder.feature_info.channels()[-1]
        stacks: list[nn.Module] = []
        for _ in range(extra_stacks):
            stacks += [nn.MaxPool2d(2), _conv_unit(width, width), _conv_unit(width, width)]
        self.extra = nn.Sequential(*stacks)
        hidden = max(width // 2, num_classes)
        self.adaptation = nn.Sequential(
            nn.Conv2d(width, hidden, kernel_size=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_classes, kernel_size=1, bias=False),
            nn.BatchNorm2d(num_classes),
        )
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.adaptation(self.extra(self.encoder(images)[-1])).mean(dim=(-2, -1))


class LinearProbe(nn.Module):
    """Encoder -> global average pooling of its last feature map -> batch norm without affine parameters -> linear
    layer: the linear probe of a frozen encoder (He et al. 2022, "Masked autoencoders are scalable vision learners",
    Appendix A.2: the parameter-free batch norm puts every encoder's features on one scale)."""

    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"a classifier needs at least one class, got {num_classes}")
        self.encoder = encoder
        width = encoder.feature_info.channels()[-1]
        self.normalise = nn.BatchNorm1d(width, affine=False)
        self.linear = nn.Linear(width, num_classes)
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(self.normalise(pooled_features(self.encoder, images)))


def pooled_features(encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(N, width): the encoder's last feature map averaged over its positions."""
    return encoder(images)[-1].mean(dim=(-2, -1))
