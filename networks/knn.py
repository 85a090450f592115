"""k-nearest-neighbour classification on a frozen encoder's pooled features: the ``knn`` evaluation protocol.

As in the SSL literature's kNN monitor (Wu et al. 2018, "Unsupervised feature learning via non-parametric instance
discrimination"; Caron et al. 2021, DINO), with plain majority votes: every labelled image is encoded once, its last feature map
averaged over positions (:func:`~ssl_medbench.networks.classifier.pooled_features`); a test image takes the classes
of its ``k`` most cosine-similar labelled images, one vote each, and the class with the most votes wins (ties: the
lowest class index). That is scikit-learn's ``KNeighborsClassifier(n_neighbors=k, metric="cosine")``, which the tests
check, with one rule of our own: among equally similar labelled images the lower index is nearer (scikit-learn's choice
among ties depends on its partition algorithm). Nothing is trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_medbench.networks.classifier import pooled_features


def knn_votes(
    bank: torch.Tensor, bank_classes: torch.Tensor, queries: torch.Tensor, neighbours: int, num_classes: int
) -> torch.Tensor:
    """(Q, num_classes) votes: for each query (Q, D), how many of its ``neighbours`` most cosine-similar rows of
    ``bank`` (N, D) hold each class (``bank_classes``, N); at most N neighbours; among equally similar rows the
    lower index is nearer."""
    if neighbours < 1:
        raise ValueError(f"knn needs at least one neighbour, got {neighbours}")
    similarity = F.normalize(queries.float(), dim=1) @ F.normalize(bank.float(), dim=1).T
    # a stable sort: among equally similar rows the lowest bank index comes first, on every device
    nearest = torch.sort(similarity, dim=1, descending=True, stable=True).indices[:, : min(neighbours, len(bank))]
    return F.one_hot(bank_classes[nearest], num_classes).sum(dim=1).float()


class KNNClassifier(nn.Module):
    """A frozen encoder with the pooled features of the labelled images: ``forward`` gives each image's votes per
    class (its argmax is the kNN prediction)."""

    def __init__(self, encoder: nn.Module, bank: torch.Tensor, bank_classes: torch.Tensor, num_classes: int, k: int):
        super().__init__()
        if len(bank) == 0:
            raise ValueError("knn needs at least one labelled image")
        self.encoder = encoder.eval()
        self.register_buffer("bank", bank)
        self.register_buffer("bank_classes", bank_classes)
        self.num_classes = num_classes
        #: The neighbours each vote takes: the configured k, or all labelled images if fewer.
        self.neighbours = min(k, len(bank))

    @classmethod
    @torch.inference_mode()
    def fit(
        cls,
        encoder: nn.Module,
        images: torch.Tensor,
        classes: torch.Tensor,
        num_classes: int,
        k: int,
        batch_size: int,
        device: torch.device,
    ) -> KNNClassifier:
        """Encode the labelled ``images`` (N, C, H, W) with their ``classes`` (N,) in batches of ``batch_size``."""
        encoder = encoder.to(device).eval()
        bank = torch.cat(
            [
                pooled_features(encoder, images[start : start + batch_size].to(device))
                for start in range(0, len(images), batch_size)
            ]
        )
        return cls(encoder, bank, classes.to(device), num_classes, k)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = pooled_features(self.encoder, images)
        return knn_votes(self.bank, self.bank_classes, features, self.neighbours, self.num_classes)
