"""Downstream tasks that each break one clause of the contract (:mod:`ssl_medbench.downstream.contract`)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.patches import PatchSampler
from ssl_medbench.downstream.brats_segmentation import BratsSegmentation
from ssl_medbench.downstream.fetal_plane_classification import FetalPlaneClassification
from ssl_medbench.downstream.segmentation import SegmentationUNet
from ssl_medbench.networks.unet_decoder import UNetDecoder
from tests.plugins.whole_tumour import WholeTumourSegmentation


class DropsAMetric(BratsSegmentation):
    """Its evaluation table lacks a declared metric (``hd95_medpy_core``)."""

    def evaluate(self, model: nn.Module, volumes: Sequence[Volume], device: torch.device) -> pd.DataFrame:
        return super().evaluate(model, volumes, device).drop(columns="hd95_medpy_core")


class SilentNan(BratsSegmentation):
    """Dice is NaN where both masks are empty, although its spec documents 1.0 for that case."""

    def evaluate(self, model: nn.Module, volumes: Sequence[Volume], device: torch.device) -> pd.DataFrame:
        table = super().evaluate(model, volumes, device)
        return table.assign(dice_whole=table["dice_whole"].where(table["empty_whole"] != "both", np.nan))


class NoLossEntry(FetalPlaneClassification):
    """Its loss names its only term ``cross_entropy``, with no ``"loss"`` entry to optimise."""

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"cross_entropy": super().loss(outputs, targets)["loss"]}


class InfiniteMetric(WholeTumourSegmentation):
    """Its Dice evaluates to infinity."""

    def evaluate(self, model: nn.Module, volumes: Sequence[Volume], device: torch.device) -> pd.DataFrame:
        return super().evaluate(model, volumes, device).assign(dice=np.inf)


class GlobalRngPatches(PatchSampler):
    """Draws its random integers from the global torch RNG instead of the generator it is given."""

    def _randint(self, high: int, generator: torch.Generator) -> int:
        return int(torch.randint(high, (1,)))


class GlobalRngSampler(WholeTumourSegmentation):
    """Its sampler draws from the global torch RNG."""

    def make_sampler(self, volumes: Sequence[Volume]) -> PatchSampler:
        return GlobalRngPatches(volumes, self.config.patch_size, foreground_fraction=0.5)


class ZeroedFeatures(SegmentationUNet):
    """Multiplies the encoder's features by 0: the gradient reaches the encoder, but it is zero."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.decoder([features * 0 for features in self.encoder(images)]))


class ZeroEncoderGradient(WholeTumourSegmentation):
    """Its model ignores the encoder's features (multiplied by 0)."""

    def build_model(self, encoder: nn.Module, decoder: nn.Module | None) -> nn.Module:
        return ZeroedFeatures(encoder, decoder if decoder is not None else UNetDecoder.for_encoder(encoder), 2)


class CopiesTheEncoder(WholeTumourSegmentation):
    """Builds its model around a deep copy of the encoder, not the encoder it was given."""

    def build_model(self, encoder: nn.Module, decoder: nn.Module | None) -> nn.Module:
        return super().build_model(copy.deepcopy(encoder), decoder)


class InstanceUnits(WholeTumourSegmentation):
    """An instance reports Dice in %, the class in fractions."""

    @property
    def metric_units(self) -> dict[str, str]:
        return {"dice": "%"}


class Float32Summary(WholeTumourSegmentation):
    """Summarises its metrics as np.float32, not float."""

    def summarise(self, per_subject: pd.DataFrame) -> dict[str, float]:
        return {name: np.float32(value) for name, value in super().summarise(per_subject).items()}


class NoPrimaryEndpoint(WholeTumourSegmentation):
    """Declares no primary endpoint."""

    primary_metric = ""


class UnknownPrimaryEndpoint(WholeTumourSegmentation):
    """Names a primary endpoint that is not one of its metrics."""

    primary_metric = "dice_mean"


class PeeksAtTheImage(WholeTumourSegmentation):
    """Its image-blind reference thresholds the test image: not blind to it."""

    def image_blind_scores(self, labelled: Sequence[Volume], volumes: Sequence[Volume]) -> pd.DataFrame:
        return pd.DataFrame([self.score(volume, volume.images[0] > 0.5) for volume in volumes])


class PeeksAtTrainingImages(WholeTumourSegmentation):
    """Its image-blind reference predicts tumour where the labelled subjects' mean image is bright, not from labels."""

    def image_blind_scores(self, labelled: Sequence[Volume], volumes: Sequence[Volume]) -> pd.DataFrame:
        bright = np.mean([volume.images[0] for volume in labelled], axis=0) > 0.25
        return pd.DataFrame([self.score(volume, bright) for volume in volumes])


class ReferenceLacksAColumn(BratsSegmentation):
    """Its image-blind reference's table lacks a column of evaluate's (``empty_core``)."""

    def image_blind_scores(self, labelled: Sequence[Volume], volumes: Sequence[Volume]) -> pd.DataFrame:
        return super().image_blind_scores(labelled, volumes).drop(columns="empty_core")
