"""The interface every downstream task implements.

A downstream task names the dataset it runs on, builds its network around a (possibly pretrained)
encoder and decoder, samples labelled training batches, defines its loss, and evaluates a trained
network on test subjects into a per-subject table whose numeric columns are its metrics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import pandas as pd
import torch
from torch import nn

from ssl_medbench.core.sampling import BatchSampler
from ssl_medbench.datasets.augmentation import TargetGeometry
from ssl_medbench.datasets.base import Volume

Direction = Literal["higher", "lower"]


class DownstreamTask(ABC):
    """Subclasses define a frozen dataclass ``Config`` with at least a ``dataset`` field (a dataset name in the grid)."""

    @dataclass(frozen=True)
    class Config:
        dataset: str = ""

    #: Metric name (column of the per-subject table) -> which direction is better.
    metric_directions: ClassVar[dict[str, Direction]] = {}
    #: Metric name -> unit: "fraction" (reports show it as %) or a physical unit such as "mm".
    metric_units: ClassVar[dict[str, str]] = {}
    #: Parts of a pretrained network this task's model can take.
    accepts: ClassVar[tuple[str, ...]] = ("encoder",)
    #: How training targets follow flips/rotations of the images ("dense" label maps, "invariant" class
    #: labels); None: not declared, and augmented training (random_augmentation) is refused.
    target_geometry: ClassVar[TargetGeometry | None] = None

    def __init__(self, config: DownstreamTask.Config, image_channels: int, class_names: tuple[str, ...] = ()):
        self.config = config
        self.image_channels = image_channels
        #: The dataset's ``class_names`` (classes or organs), for tasks whose outputs depend on them.
        self.class_names = class_names

    @abstractmethod
    def build_model(self, encoder: nn.Module, decoder: nn.Module | None) -> nn.Module:
        """The full downstream network around ``encoder`` (and ``decoder`` if the task uses one)."""

    @abstractmethod
    def make_sampler(self, volumes: Sequence[Volume]) -> BatchSampler:
        """The labelled training batches of ``volumes``: ``sample(batch_size, generator)`` gives (inputs, targets) CPU tensors."""

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms; the ``"loss"`` entry is optimised."""

    @abstractmethod
    def evaluate(self, model: nn.Module, volumes: Sequence[Volume], device: torch.device) -> pd.DataFrame:
        """One row per test subject: ``subject_id`` and one column per metric in ``metric_directions``."""

    def subject_scores(self, per_subject: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
        """One row per test subject with those of ``metrics`` that are defined per subject (for the report's paired statistics)."""
        return per_subject.groupby("subject_id", as_index=False)[[m for m in metrics if m in per_subject]].mean()

    def write_artifacts(self, per_subject: pd.DataFrame, folder: Path) -> None:
        """Write extra evaluation files (e.g. a confusion matrix) into ``folder``; logged with the cell."""

    def summarise(self, per_subject: pd.DataFrame) -> dict[str, float]:
        """Summary metrics logged for the cell: the mean of each metric over subjects (NaN-skipping)."""
        return {name: float(per_subject[name].mean()) for name in self.metric_directions}
