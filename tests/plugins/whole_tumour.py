"""A minimal third-party downstream task (binary whole-tumour segmentation): what a plugin writes to meet the contract."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.patches import PatchSampler
from ssl_medbench.datasets.views import AxialPatches
from ssl_medbench.downstream.base import DownstreamTask, ExampleData, MetricSpec
from ssl_medbench.downstream.metrics import dice
from ssl_medbench.downstream.segmentation import SegmentationUNet
from ssl_medbench.networks.unet_decoder import UNetDecoder


class WholeTumourSegmentation(DownstreamTask):
    accepts = ("encoder", "decoder")
    primary_metric = "dice"

    @dataclass(frozen=True)
    class Config:
        dataset: str = "brats_phantom"
        patch_size: int = 32

    @classmethod
    def metric_specs(cls, class_names: Sequence[str] = (), config: Any = None) -> dict[str, MetricSpec]:
        return {"dice": MetricSpec("higher", "fraction")}

    @classmethod
    def example_data(cls, generator: np.random.Generator) -> ExampleData:
        tumour = np.zeros((32, 32, 4), np.uint8)
        tumour[8:20, 10:22, 1:3] = 1
        volumes = []
        for index, labels in enumerate((tumour, np.zeros_like(tumour))):
            images = generator.normal(0.0, 0.1, (1, *labels.shape)) + labels
            volumes.append(Volume(f"s{index}", images.astype(np.float32), labels, (1.0, 1.0, 2.0)))
        return ExampleData(tuple(volumes), channels=1)

    def build_model(self, encoder: nn.Module, decoder: nn.Module | None) -> nn.Module:
        return SegmentationUNet(encoder, decoder if decoder is not None else UNetDecoder.for_encoder(encoder), 2)

    def input_view(self) -> AxialPatches:
        return AxialPatches(self.config.patch_size)

    def make_sampler(self, volumes: Sequence[Volume]) -> PatchSampler:
        return PatchSampler(volumes, self.config.patch_size, foreground_fraction=0.5)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(outputs, (targets > 0).long())}

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, volumes: Sequence[Volume], device: torch.device) -> pd.DataFrame:
        """Dice per subject (1.0 when both masks are empty), slices whole; their sides must be multiples of the stride."""
        model.eval()
        rows = []
        for volume in volumes:
            slices = torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume.images, -1, 0))).to(device)
            rows.append(self.score(volume, np.moveaxis(model(slices).argmax(dim=1).cpu().numpy(), 0, -1) > 0))
        return pd.DataFrame(rows)

    def image_blind_scores(self, labelled: Sequence[Volume], volumes: Sequence[Volume]) -> pd.DataFrame:
        """The image-blind reference: tumour where more than half of the labelled subjects have tumour (the per-voxel
        majority, ties to background), the same mask for every test subject."""
        tumour = np.mean([volume.labels > 0 for volume in labelled], axis=0) > 0.5
        return pd.DataFrame([self.score(volume, tumour) for volume in volumes])

    @classmethod
    def never_predicted(cls, per_subject: pd.DataFrame) -> list[str]:
        """["tumour"] if some test subject has tumour and no prediction has any."""
        return ["tumour"] if per_subject["has_tumour"].any() and not per_subject["predicted_tumour"].any() else []

    @staticmethod
    def score(volume: Volume, tumour: np.ndarray) -> dict[str, object]:
        """One row: Dice of the predicted ``tumour`` mask against the subject's tumour, and whether each has any."""
        reference = volume.labels > 0
        return {
            "subject_id": volume.subject_id,
            "dice": dice(tumour, reference),
            "has_tumour": bool(reference.any()),
            "predicted_tumour": bool(tumour.any()),
        }
