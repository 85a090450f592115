"""The interface every downstream task implements.

A downstream task names the dataset it runs on, builds its network around a (possibly pretrained)
encoder and decoder, samples labelled training batches, defines its loss, and evaluates a trained
network on test subjects into a per-subject table. Its metrics (names, units, better direction,
NaN rule) are class-level metadata (:meth:`DownstreamTask.metric_specs`), readable without building
the task, and it provides tiny example data of its own kind for the shipped contract
(:mod:`ssl_medbench.downstream.contract`). Every task also scores an image-blind reference predictor
(:meth:`DownstreamTask.image_blind_scores`, :mod:`ssl_medbench.downstream.image_blind`), the report's measure of
how much the images add.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from ssl_medbench.core.sampling import BatchSampler
from ssl_medbench.datasets.augmentation import TargetGeometry
from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.views import InputView

Direction = Literal["higher", "lower"]


@dataclass(frozen=True)
class MetricSpec:
    """How to read one metric: which direction is better, its unit, and when (if ever) it is NaN."""

    direction: Direction
    #: "fraction" (reports show it as %) or a physical unit such as "mm".
    unit: str
    #: The documented case in which a subject's value is NaN (left out of means, counted elsewhere);
    #: empty: never NaN, an undefined case gets a documented worst-case value instead.
    nan_when: str = ""
    #: Whether every test subject has its own value (False: defined over all test images only, e.g. macro F1).
    per_subject: bool = True


@dataclass(frozen=True)
class ExampleData:
    """A few tiny synthetic subjects of the kind a task trains on, with the dataset facts the task is built from."""

    volumes: tuple[Volume, ...]
    #: Image channels (``Volume.images.shape[0]``).
    channels: int
    #: The dataset's ``class_names`` (empty where the task defines its own classes).
    class_names: tuple[str, ...] = ()


class DownstreamTask(ABC):
    """Subclasses define a frozen dataclass ``Config`` with at least a ``dataset`` field (a dataset name in the grid)."""

    @dataclass(frozen=True)
    class Config:
        dataset: str = ""

    #: Parts of a pretrained network this task's model can take.
    accepts: ClassVar[tuple[str, ...]] = ("encoder",)
    #: How training targets follow flips/rotations of the images ("dense" label maps, "invariant" class
    #: labels); None: not declared, and augmented training (random_augmentation) is refused.
    target_geometry: ClassVar[TargetGeometry | None] = None
    #: The task's primary endpoint: the one metric of :meth:`metric_specs` by which initialisations are compared on
    #: this task (every other metric describes); each task declares it.
    primary_metric: ClassVar[str] = ""
    #: Whether the task predicts one class per input image, its model giving one score per class (the ``knn``
    #: protocol applies; the task implements :meth:`labelled_images`).
    classifies_images: ClassVar[bool] = False
    #: The spatial dimensions of the networks the task has a form for: 2 and, where implemented, 3 (volumes).
    spatial_dims_supported: ClassVar[tuple[int, ...]] = (2,)
    #: 2 or 3: the dimensions of this instance's network inputs (:meth:`build` sets it).
    spatial_dims: int = 2

    def __init__(self, config: DownstreamTask.Config, image_channels: int, class_names: tuple[str, ...] = ()):
        self.config = config
        self.image_channels = image_channels
        #: The dataset's ``class_names`` (classes or organs), for tasks whose outputs depend on them.
        self.class_names = class_names

    @classmethod
    def build(
        cls,
        config: DownstreamTask.Config,
        image_channels: int,
        class_names: tuple[str, ...] = (),
        spatial_dims: int = 2,
    ) -> DownstreamTask:
        """The task in its ``spatial_dims`` form; ValueError for a form it does not have."""
        if spatial_dims not in cls.spatial_dims_supported:
            forms = " and ".join(f"{dims}D" for dims in cls.spatial_dims_supported)
            raise ValueError(f"{cls.__name__} has no {spatial_dims}D form (it works in {forms})")
        task = cls(config, image_channels, class_names)
        task.spatial_dims = spatial_dims
        return task

    @classmethod
    @abstractmethod
    def metric_specs(cls, class_names: Sequence[str] = (), config: Config | None = None) -> dict[str, MetricSpec]:
        """Metric name -> its spec, for a dataset with ``class_names`` (empty: the task's default classes) and the task
        ``config`` (None: the defaults; a task whose metrics its settings choose reads them here).

        Per-subject metrics are columns of :meth:`subject_scores`; every metric is a key of :meth:`summarise`.
        """

    @classmethod
    @abstractmethod
    def example_data(cls, generator: np.random.Generator) -> ExampleData:
        """A few tiny synthetic subjects (including a documented empty or missed case) for the contract checks."""

    @classmethod
    def metric_directions_for(
        cls, class_names: Sequence[str] = (), config: Config | None = None
    ) -> dict[str, Direction]:
        """Metric name -> which direction is better (logged as the ``metric_directions`` tag)."""
        return {name: spec.direction for name, spec in cls.metric_specs(class_names, config).items()}

    @classmethod
    def metric_units_for(cls, class_names: Sequence[str] = (), config: Config | None = None) -> dict[str, str]:
        """Metric name -> unit (logged as the ``metric_units`` tag)."""
        return {name: spec.unit for name, spec in cls.metric_specs(class_names, config).items()}

    @property
    def metric_directions(self) -> dict[str, Direction]:
        """:meth:`metric_directions_for` this task's dataset classes and config."""
        return self.metric_directions_for(self.class_names, self.config)

    @property
    def metric_units(self) -> dict[str, str]:
        """:meth:`metric_units_for` this task's dataset classes and config."""
        return self.metric_units_for(self.class_names, self.config)

    def metric_conventions(self) -> dict[str, str]:
        """Metric (or family, e.g. ``hd95_medpy_<region>``) -> the definition it follows where tools disagree, and
        ``"empty masks"`` -> the rule for empty masks; logged as the ``metric_conventions`` tag and printed under the
        report's tables. Empty for a task whose metrics have one accepted definition (its docstrings give it)."""
        return {}

    @abstractmethod
    def build_model(self, encoder: nn.Module, decoder: nn.Module | None) -> nn.Module:
        """The full downstream network around ``encoder`` (and ``decoder`` if the task uses one)."""

    def build_frozen_model(self, encoder: nn.Module, decoder: nn.Module | None) -> nn.Module:
        """The network of the ``frozen`` protocol around ``encoder``, which stays frozen: by default :meth:`build_model`
        (its decoder and head train); a classification task gives a linear probe."""
        return self.build_model(encoder, decoder)

    def labelled_images(self, volumes: Sequence[Volume]) -> tuple[torch.Tensor, torch.Tensor]:
        """Every input image of ``volumes`` as :meth:`evaluate` feeds them to the model (N, C, H, W) with its class
        index (N,): the labelled examples of the ``knn`` protocol. Only for tasks that :attr:`classifies_images`."""
        raise NotImplementedError(
            f"{type(self).__name__} does not classify images, so it has no labelled images for knn"
        )

    @abstractmethod
    def input_view(self) -> InputView:
        """What this task's network takes (kind and size of its inputs, 2D or 3D): pretraining for this task samples the
        same view (:mod:`ssl_medbench.datasets.views`), without labels."""

    @abstractmethod
    def make_sampler(self, volumes: Sequence[Volume]) -> BatchSampler:
        """The labelled training batches of ``volumes``: ``sample(batch_size, generator)`` gives (inputs, targets) CPU tensors."""

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms; the ``"loss"`` entry is optimised."""

    @abstractmethod
    def evaluate(self, model: nn.Module, volumes: Sequence[Volume], device: torch.device) -> pd.DataFrame:
        """Rows of test subjects (``subject_id``), by default one per subject with one column per per-subject metric."""

    @abstractmethod
    def image_blind_scores(self, labelled: Sequence[Volume], volumes: Sequence[Volume]) -> pd.DataFrame:
        """The table :meth:`evaluate` gives (same rows and columns, same scoring code) for the task's image-blind
        reference predictor on the test subjects ``volumes``.

        The reference is built from the labels of ``labelled`` (the cell's labelled training subjects) only, and its
        prediction for a test subject does not depend on any image value (at most on the image's shape): the
        per-voxel majority label, the majority class, the mean box. Replacing any image by noise leaves the table
        unchanged (checked by the contract).
        """

    @classmethod
    @abstractmethod
    def never_predicted(cls, per_subject: pd.DataFrame) -> list[str]:
        """The classes, regions or organs present in the test references that the model predicted for no test subject
        (from :meth:`evaluate`'s table): a cell with any is reported as collapsed."""

    @classmethod
    def whole_set_scores(cls, per_subject: pd.DataFrame) -> dict[str, float]:
        """The metrics of :meth:`metric_specs` that are defined over all test subjects only (``per_subject=False``),
        computed on the rows of ``per_subject`` (any subset of :meth:`evaluate`'s table): the report recomputes them
        without each subject in turn for their uncertainty. Empty for a task whose metrics are all per subject."""
        return {}

    @classmethod
    def subject_scores(cls, per_subject: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
        """One row per test subject with those of ``metrics`` that are defined per subject (for the report's paired statistics)."""
        return per_subject.groupby("subject_id", as_index=False)[[m for m in metrics if m in per_subject]].mean()

    def write_artifacts(self, per_subject: pd.DataFrame, folder: Path) -> None:
        """Write extra evaluation files (e.g. a confusion matrix) into ``folder``; logged with the cell."""

    def summarise(self, per_subject: pd.DataFrame) -> dict[str, float]:
        """Summary metrics logged for the cell: the mean of each metric over subjects (NaN-skipping)."""
        return {name: float(per_subject[name].mean()) for name in self.metric_directions}
