"""What a network sees of a dataset: the 2D (or 3D) inputs a downstream task trains on, drawn the same way for
pretraining.

Chen et al. (2019) pretrain on the inputs of the network they initialise: whole 2D images for the fetal ultrasound
and abdominal CT tasks, 64x64 patches of axial slices for brain MR (their Fig. 4). A downstream task declares its view
(``DownstreamTask.input_view``); a pretrain job draws unlabelled batches of that view through the same sampler class
the task trains with, every label-guided choice switched off (pretraining never looks at labels). The view is part
of the pretrain job's key: two downstream tasks with one view on one dataset share their pretraining, two views
pretrain twice. A 3D downstream task's view is :class:`Cubes` of its volumes, so its pretraining sees cubes too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from ssl_medbench.core.sampling import BatchSampler
from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.patches import CubeSampler, PatchSampler
from ssl_medbench.datasets.slice_samplers import OrthogonalSliceSampler, SliceClassSampler


class InputView(ABC):
    """A kind of input and its size; subclasses are frozen dataclasses (their fields go into the job key)."""

    #: Short name of the kind, in run names and the ``pretext_view`` tag.
    kind: ClassVar[str]
    #: 2 for images, 3 for volumes.
    spatial_dims: ClassVar[int] = 2

    @property
    @abstractmethod
    def size(self) -> int | None:
        """Side in pixels of the square inputs; None where the dataset's own image size decides."""

    @abstractmethod
    def unlabelled_sampler(self, volumes: Sequence[Volume]) -> BatchSampler:
        """Batches of this view of ``volumes`` drawn without looking at labels (the targets it returns are unused)."""

    @property
    def name(self) -> str:
        """``<kind>@<size>``, or ``<kind>@native`` when the dataset's image size decides."""
        return f"{self.kind}@{self.size if self.size is not None else 'native'}"

    def describe(self, shape: Sequence[int]) -> str:
        """``<kind>@<side>`` for inputs of ``shape`` (C, H, W) or (C, D, H, W): the ``pretext_view`` tag of a pretrain
        run."""
        sides = tuple(shape[1:])
        return f"{self.kind}@{sides[0]}" if len(set(sides)) == 1 else f"{self.kind}@{'x'.join(map(str, sides))}"


@dataclass(frozen=True)
class AxialPatches(InputView):
    """Square patches of axial slices of 3D volumes (:class:`~ssl_medbench.datasets.patches.PatchSampler`); for
    pretraining centred anywhere in the brain, never on labels."""

    kind: ClassVar[str] = "axial_patches"
    side: int

    @property
    def size(self) -> int:
        return self.side

    def unlabelled_sampler(self, volumes: Sequence[Volume]) -> PatchSampler:
        return PatchSampler(volumes, self.side, foreground_fraction=0.0)


@dataclass(frozen=True)
class Cubes(InputView):
    """Cubes of ``side`` voxels of 3D volumes (:class:`~ssl_medbench.datasets.patches.CubeSampler`); for pretraining
    centred anywhere in the brain's bounding box, never on labels."""

    kind: ClassVar[str] = "cubes"
    spatial_dims: ClassVar[int] = 3
    side: int

    @property
    def size(self) -> int:
        return self.side

    def unlabelled_sampler(self, volumes: Sequence[Volume]) -> CubeSampler:
        return CubeSampler(volumes, self.side, foreground_fraction=0.0)


@dataclass(frozen=True)
class WholeImages(InputView):
    """The 2D images of a dataset as it loads them, at its own ``image_size``
    (:class:`~ssl_medbench.datasets.slice_samplers.SliceClassSampler`); for pretraining drawn uniformly, not by class."""

    kind: ClassVar[str] = "images"

    @property
    def size(self) -> None:
        return None

    def unlabelled_sampler(self, volumes: Sequence[Volume]) -> SliceClassSampler:
        return SliceClassSampler(volumes, class_balanced=False)


@dataclass(frozen=True)
class OrthogonalSlices(InputView):
    """Whole slices along all three axes of 3D volumes, each resized to ``side`` squared
    (:class:`~ssl_medbench.datasets.slice_samplers.OrthogonalSliceSampler`, de Vos et al. 2017)."""

    kind: ClassVar[str] = "slices_xyz"
    side: int

    @property
    def size(self) -> int:
        return self.side

    def unlabelled_sampler(self, volumes: Sequence[Volume]) -> OrthogonalSliceSampler:
        return OrthogonalSliceSampler(volumes, self.side)
