"""What the segmentation tasks share: a U-Net trained on patches of labelled volumes and applied to whole volumes.

In 2D (Chen et al. 2019, Section 4.3) the network trains on square patches of axial slices and predicts every axial
slice whole; in 3D (the 3D U-Net of Cicek et al. 2016) it trains on cubes and predicts the volume by sliding windows
(:mod:`~ssl_medbench.downstream.sliding_window`). Training patches are centred on a labelled voxel with probability
``foreground_fraction`` (:mod:`~ssl_medbench.datasets.patches`); the loss is cross-entropy plus ``dice_loss_weight``
times the soft Dice over the foreground classes. A task built on :class:`PatchSegmentation` scores each structure
(region or organ) of a predicted label map in :meth:`PatchSegmentation.subject_row`, with an ``empty_<structure>``
column saying which mask was empty, if any.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from numbers import Real

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.patches import CubeSampler, PatchSampler
from ssl_medbench.datasets.views import AxialPatches, Cubes
from ssl_medbench.downstream.base import DownstreamTask, MetricSpec
from ssl_medbench.downstream.metrics import EMPTY_MASK_POLICIES
from ssl_medbench.downstream.sliding_window import sliding_window_logits
from ssl_medbench.networks.unet_decoder import UNetDecoder
from ssl_medbench.networks.vgg_encoder import layers_for

NSD_SPEC = MetricSpec("higher", "fraction")


def nsd_name(tolerance_mm: float) -> str:
    """The metric name stem of the normalised surface Dice at ``tolerance_mm``: ``nsd_1mm``, ``nsd_0.5mm``."""
    return f"nsd_{tolerance_mm:g}mm"


class SegmentationUNet(nn.Module):
    """Encoder + U-Net decoder + 1x1 (1x1x1) conv classifier."""

    def __init__(self, encoder: nn.Module, decoder: UNetDecoder, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.classifier = layers_for(decoder.spatial_dims)[0](decoder.out_channels, num_classes, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.decoder(self.encoder(images)))


def soft_dice_loss(logits: torch.Tensor, targets: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """1 - mean soft Dice over ``classes``, pooled over the batch (Milletari et al. 2016)."""
    probabilities = logits.softmax(dim=1)
    losses = []
    for cls in classes:
        p = probabilities[:, cls]
        t = (targets == cls).to(p.dtype)
        losses.append(1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1))
    return torch.stack(losses).mean()


def is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def listed(value: object) -> object:
    """A setting's value as the grid writes it: a list for a tuple or list, else the value itself."""
    return list(value) if isinstance(value, (tuple, list)) else value


def check_surface_settings(tolerances: object, policy: object) -> None:
    """Refuse NSD tolerances that are not distinct positive distances with distinct metric names, and an unknown
    empty-mask policy (ValueError, reported by the grid with the key)."""
    if not isinstance(tolerances, (tuple, list)) or any(not (is_number(t) and 0 < t < math.inf) for t in tolerances):
        raise ValueError(f"nsd_tolerances_mm {listed(tolerances)!r}: expected distinct tolerances > 0 mm")
    names = [nsd_name(t) for t in tolerances]
    if len(set(names)) != len(names):
        raise ValueError(
            f"nsd_tolerances_mm {list(tolerances)}: expected distinct tolerances > 0 mm; these share a metric name "
            f"({', '.join(sorted({n for n in names if names.count(n) > 1}))}, 6 significant digits)"
        )
    if policy not in EMPTY_MASK_POLICIES:
        raise ValueError(f"empty_mask_policy {policy!r}: expected one of {', '.join(EMPTY_MASK_POLICIES)}")


class PatchSegmentation(DownstreamTask):
    """A segmentation task on patches (2D) or cubes (3D); its ``Config`` has ``patch_size``, ``foreground_fraction``,
    ``inference_batch`` and ``dice_loss_weight``. Subclasses give :attr:`num_classes` and :meth:`subject_row`."""

    accepts = ("encoder", "decoder")
    target_geometry = "dense"
    spatial_dims_supported = (2, 3)
    #: Classes of the label maps, background included.
    num_classes: int

    @abstractmethod
    def subject_row(self, volume: Volume, predicted: np.ndarray) -> dict[str, object]:
        """One subject's row of :meth:`evaluate`: its scores for the ``predicted`` label map (x, y, z), with an
        ``empty_<structure>`` column per scored structure."""

    def build_model(self, encoder: nn.Module, decoder: nn.Module | None) -> nn.Module:
        decoder = decoder if decoder is not None else UNetDecoder.for_encoder(encoder)
        return SegmentationUNet(encoder, decoder, self.num_classes)

    def input_view(self) -> AxialPatches | Cubes:
        return AxialPatches(self.config.patch_size) if self.spatial_dims == 2 else Cubes(self.config.patch_size)

    def make_sampler(self, volumes: Sequence[Volume]) -> PatchSampler:
        sampler = PatchSampler if self.spatial_dims == 2 else CubeSampler
        return sampler(volumes, self.config.patch_size, self.config.foreground_fraction)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        cross_entropy = F.cross_entropy(outputs, targets)
        dice_term = soft_dice_loss(outputs, targets, classes=range(1, self.num_classes))
        return {
            "loss": cross_entropy + self.config.dice_loss_weight * dice_term,
            "cross_entropy": cross_entropy,
            "soft_dice": dice_term,
        }

    @torch.inference_mode()
    def predict_volume(self, model: nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
        """Canonical labels (x, y, z) predicted slice by slice along the last (axial) axis; in 3D, by sliding windows."""
        if self.spatial_dims == 3:
            logits = sliding_window_logits(model, images, self.config.patch_size, self.config.inference_batch, device)
            return logits.argmax(dim=0).cpu().numpy().astype(np.uint8)
        multiple = model.decoder.size_multiple
        _, height, width, depth = images.shape
        pad_h, pad_w = -height % multiple, -width % multiple
        labels = np.zeros((height, width, depth), np.uint8)
        for start in range(0, depth, self.config.inference_batch):
            stop = min(start + self.config.inference_batch, depth)
            batch = torch.from_numpy(np.ascontiguousarray(np.moveaxis(images[..., start:stop], -1, 0)))
            batch = F.pad(batch.to(device), (0, pad_w, 0, pad_h))
            logits = model(batch)[:, :, :height, :width]
            labels[..., start:stop] = np.moveaxis(logits.argmax(dim=1).cpu().numpy().astype(np.uint8), 0, -1)
        return labels

    def evaluate(self, model: nn.Module, volumes: Sequence[Volume], device: torch.device) -> pd.DataFrame:
        model.eval()
        return pd.DataFrame(
            [
                self.subject_row(volume, self.predict_volume(model, np.asarray(volume.images), device))
                for volume in volumes
            ]
        )

    @classmethod
    def never_predicted(cls, per_subject: pd.DataFrame) -> list[str]:
        """Structures present in some test subject's reference whose predicted mask is empty in every test subject."""
        return [
            column.removeprefix("empty_")
            for column in per_subject.columns
            if column.startswith("empty_")
            and per_subject[column].isin(["prediction", "both"]).all()
            and (per_subject[column] == "prediction").any()
        ]

    def summarise(self, per_subject: pd.DataFrame) -> dict[str, float]:
        """Means over subjects, plus ``empty_masks_<structure>``: how many subjects fell under an empty-mask rule."""
        summary = super().summarise(per_subject)
        for column in per_subject.columns:
            if column.startswith("empty_"):
                summary[f"empty_masks_{column.removeprefix('empty_')}"] = float((per_subject[column] != "none").sum())
        return summary
