"""The interfaces every initialisation and pretext task implements.

An :class:`Initialisation` says how a downstream network starts (which parts are transferred from a
pretraining job, if any, and whether its training is augmented). A :class:`PretextTask` is an
initialisation that pretrains: it turns a batch of unlabeled images into (inputs, targets),
provides the head on top of the shared network, the loss and a preview figure. The runner owns the
encoder, decoder, optimiser, loop and logging, so every task is compared on the same network and
schedule.

Two families cover the paper's tasks: :class:`ReconstructionTask` (encoder + decoder output an
image; AE, CP, CR) and :class:`ClassificationTask` (one or more crops through the shared encoder,
a classifier on their pooled features; RP, JS).

Every initialisation works on 2D images (B, C, H, W); one whose ``spatial_dims_supported`` holds 3 has a 3D form too,
on volumes (B, C, D, H, W), and :meth:`Initialisation.build` makes the instance of either form (its ``spatial_dims``).
A 3D view is a cube: ``check_image_size`` is given one face of it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ssl_medbench.networks.decoders import DECODERS, build_decoder
from ssl_medbench.networks.vgg_encoder import layers_for
from ssl_medbench.pretext_tasks.heads import SiameseClassifier

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ssl_medbench.datasets.augmentation import BatchAugmentation

ENCODER = "encoder"
DECODER = "decoder"


@dataclass(frozen=True)
class TensorSpec:
    """Shape and dtype of a tensor ``make_batch`` returns."""

    shape: tuple[int, ...]
    dtype: torch.dtype


@dataclass(frozen=True)
class BatchSpec:
    inputs: TensorSpec
    targets: TensorSpec


def images_and_mask_spec(images_shape: tuple[int, ...]) -> BatchSpec:
    """The batch of a masked-reconstruction task: inputs shaped like the images (B, C, *spatial); targets, the images
    with the mask as one more channel (1 where the input was masked)."""
    batch, channels, *spatial = images_shape
    return BatchSpec(
        TensorSpec(tuple(images_shape), torch.float32),
        TensorSpec((batch, channels + 1, *spatial), torch.float32),
    )


def forward_each_input(encoder: nn.Module, head: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """K inputs per example (B, K, C, *spatial) through the shared encoder; the head gets their deepest features
    (B, K, F, *spatial')."""
    batch, crops = inputs.shape[:2]
    deepest = encoder(inputs.flatten(0, 1))[-1]
    return head(deepest.unflatten(0, (batch, crops)))


class Initialisation(ABC):
    """How a downstream network is initialised. Subclasses define a frozen dataclass ``Config``."""

    @dataclass(frozen=True)
    class Config:
        pass

    #: Short label used in tables (e.g. "CR"); defaults to the registry name.
    label: ClassVar[str] = ""
    #: Which weight-initialisation stream of the job seed the downstream network draws from: 0 for every
    #: initialisation but the negative control, which takes another (``benchmark.jobs.job_seeds``).
    weight_stream: ClassVar[int] = 0
    #: True for an initialisation that pretrains on the downstream task's own labels (a control, not a pretext task):
    #: its pretrain job belongs to one downstream task.
    uses_labels: ClassVar[bool] = False
    #: True for the baseline every comparison is made against (Random): its cells also score the downstream task's
    #: image-blind reference on their labelled subjects, so the reference is paired with it by seed and subject.
    scores_reference: ClassVar[bool] = False
    #: The spatial dimensions the initialisation has a form for: 2 (images) and, where implemented, 3 (volumes).
    spatial_dims_supported: ClassVar[tuple[int, ...]] = (2,)
    #: 2 or 3: the dimensions of the images this instance works on (:meth:`build` sets it).
    spatial_dims: int = 2

    def __init__(self, config: Initialisation.Config | None = None):
        self.config = config if config is not None else self.Config()

    @classmethod
    def build(cls, config: Initialisation.Config | None = None, spatial_dims: int = 2) -> Initialisation:
        """The initialisation with ``config`` in its ``spatial_dims`` form; ValueError for a form it does not have."""
        if spatial_dims not in cls.spatial_dims_supported:
            forms = " and ".join(f"{dims}D" for dims in cls.spatial_dims_supported)
            raise ValueError(f"{cls.__name__} has no {spatial_dims}D form (it works in {forms})")
        initialisation = cls(config)
        initialisation.spatial_dims = spatial_dims
        return initialisation

    @property
    def transfers(self) -> tuple[str, ...]:
        """Parts of the pretrained network loaded into the downstream network: (), ("encoder",) or ("encoder", "decoder")."""
        return ()

    @property
    def requires_pretraining(self) -> bool:
        return isinstance(self, PretextTask)

    def finetune_augmentation(self) -> BatchAugmentation | None:
        """Augmentation applied to every downstream training batch (RD+AG), or None."""
        return None

    def check_image_size(self, height: int, width: int) -> None:
        """Raise ValueError if this task cannot work on ``height`` x ``width`` pretraining images."""


class PretextTask(Initialisation):
    """A self-supervised task trained on unlabeled images before transfer."""

    #: False for a task whose batches do not depend on the generator (the auto-encoder).
    randomised: ClassVar[bool] = True

    @property
    def transfers(self) -> tuple[str, ...]:
        return (ENCODER, DECODER) if self.decoder == "unet" else (ENCODER,)

    @property
    def decoder(self) -> str | None:
        """Which decoder of ``networks.decoders.DECODERS`` the pretext network has, or None for encoder-only tasks."""
        return None

    @abstractmethod
    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrupt a whole batch ``images`` (B, C, H, W), or (B, C, D, H, W) in 3D, at once, on its device, drawing only
        from ``generator``."""

    @abstractmethod
    def batch_spec(self, images_shape: tuple[int, ...]) -> BatchSpec:
        """Shapes and dtypes ``make_batch`` returns for float32 images of ``images_shape`` (checked by the contract tests)."""

    @abstractmethod
    def build_head(self, in_channels: int, image_channels: int) -> nn.Module:
        """The task-specific head on top of the decoder output (or encoder features for encoder-only tasks)."""

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms; the ``"loss"`` entry is optimised, the others are logged."""

    @abstractmethod
    def preview(self, inputs: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor) -> Figure:
        """A figure of a few examples: inputs, targets and the network's outputs (logged as ``preview.png``)."""

    def forward(
        self, encoder: nn.Module, decoder: nn.Module | None, head: nn.Module, inputs: torch.Tensor
    ) -> torch.Tensor:
        """Default composition: head(decoder(encoder(x))) or head(encoder(x)[-1]). Siamese tasks override it."""
        features: Sequence[torch.Tensor] = encoder(inputs)
        if decoder is not None:
            return head(decoder(features))
        return head(features[-1])

    def write_artifacts(self, folder: Path) -> None:
        """Write files a pretrain run should keep besides the weights (e.g. jigsaw's permutation set)."""

    def geometry(self, side: int) -> dict[str, int | float]:
        """What the task's sizes become on square images of ``side`` pixels (patch sides, gaps, the share of the
        image it changes): logged with every pretrain run and tabled in docs/pretext_views.md. Empty: no geometry."""
        return {}


class ReconstructionTask(PretextTask):
    """A pretext task whose network outputs an image: encoder + decoder + 1x1 conv head, L2 loss to the target.

    Context restoration, auto-encoding and inpainting share this shape (Chen et al. 2019, Fig. 3);
    subclasses define how a batch is corrupted, and their ``Config`` subclasses
    ``ReconstructionTask.Config`` to inherit the decoder choice.
    """

    @dataclass(frozen=True)
    class Config:
        #: "unet": the segmentation U-Net's decoder (transfers with the encoder; Fig. 3, first row);
        #: "deconv": a few deconvolution layers, for classification downstream tasks (Fig. 3, second row; not transferred);
        #: "auto": the paper's rule, resolved per pretrain job: "unet" if a downstream task on the same
        #: dataset takes a decoder, else "deconv" (``benchmark.grid.GridConfig.pretext_config_for``); "unet" on its own.
        decoder: str = "auto"

    def __init__(self, config: ReconstructionTask.Config | None = None):
        super().__init__(config)
        if not isinstance(self.config, ReconstructionTask.Config):
            raise TypeError(
                f"{type(self).__name__}.Config must subclass ReconstructionTask.Config (it holds the decoder choice)"
            )
        if self.config.decoder not in ("auto", *DECODERS):
            raise ValueError(f"decoder must be one of auto, {', '.join(DECODERS)}, got {self.config.decoder!r}")

    @property
    def decoder(self) -> str:
        return "unet" if self.config.decoder == "auto" else self.config.decoder

    def batch_spec(self, images_shape: tuple[int, ...]) -> BatchSpec:
        return BatchSpec(TensorSpec(tuple(images_shape), torch.float32), TensorSpec(tuple(images_shape), torch.float32))

    def build_head(self, in_channels: int, image_channels: int) -> nn.Module:
        convolution = layers_for(self.spatial_dims)[0]
        return convolution(in_channels, image_channels, kernel_size=1)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": F.mse_loss(outputs, targets)}

    def preview(self, inputs: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor) -> Figure:
        from ssl_medbench.pretext_tasks.preview import reconstruction_figure

        return reconstruction_figure(targets, inputs, outputs)


class ClassificationTask(PretextTask):
    """A pretext task that classifies K crops of an image seen through the shared (siamese) encoder.

    ``make_batch`` returns inputs (B, K, C, *crop) and integer class targets (B,). Each crop goes
    through the same encoder; the deepest feature maps go to a :class:`SiameseClassifier`, which
    pools them, embeds each with one shared layer, concatenates the K embeddings in input order and
    predicts one of ``num_classes`` classes (the fc6 / fc7 / fc8 layout of Doersch et al. 2015 and
    Noroozi & Favaro 2016). Cross-entropy loss; accuracy is logged. Only the encoder transfers.
    """

    #: Crops per example (K).
    inputs_per_example: ClassVar[int] = 1

    @property
    @abstractmethod
    def num_classes(self) -> int:
        """How many classes the head predicts."""

    def class_name(self, index: int) -> str:
        """Readable name of class ``index`` for previews."""
        return str(index)

    def crop_shape(self, *sides: int) -> tuple[int, ...]:
        """The sides of each crop for images of ``sides`` (height, width; depth, height, width in 3D)."""
        return sides

    def batch_spec(self, images_shape: tuple[int, ...]) -> BatchSpec:
        batch, channels, *sides = images_shape
        crop = self.crop_shape(*sides)
        return BatchSpec(
            TensorSpec((batch, self.inputs_per_example, channels, *crop), torch.float32),
            TensorSpec((batch,), torch.int64),
        )

    def build_head(self, in_channels: int, image_channels: int) -> nn.Module:
        return SiameseClassifier(in_channels, self.inputs_per_example, self.num_classes, spatial_dims=self.spatial_dims)

    def forward(
        self, encoder: nn.Module, decoder: nn.Module | None, head: nn.Module, inputs: torch.Tensor
    ) -> torch.Tensor:
        return forward_each_input(encoder, head, inputs)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        accuracy = (outputs.detach().argmax(dim=1) == targets).float().mean()
        return {"loss": F.cross_entropy(outputs, targets), "accuracy": accuracy}

    def preview(self, inputs: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor) -> Figure:
        from ssl_medbench.pretext_tasks.preview import classification_figure

        predicted = outputs.argmax(dim=1).tolist()
        titles = [
            f"true {self.class_name(t)} / predicted {self.class_name(p)}" for t, p in zip(targets.tolist(), predicted)
        ]
        return classification_figure(inputs, titles)


class PretextNetwork(nn.Module):
    """Encoder (+ decoder) + head, run through the task's ``forward``; the runner trains this."""

    def __init__(self, task: PretextTask, encoder: nn.Module, decoder: nn.Module | None, head: nn.Module):
        super().__init__()
        self.task = task
        self.encoder = encoder
        self.decoder = decoder
        self.head = head

    @classmethod
    def for_task(cls, task: PretextTask, encoder: nn.Module, image_channels: int) -> PretextNetwork:
        """``encoder`` + the decoder the task chose (if any) + the task's head."""
        decoder = build_decoder(task.decoder, encoder) if task.decoder else None
        head_channels = decoder.out_channels if decoder is not None else encoder.feature_info.channels()[-1]
        return cls(task, encoder, decoder, task.build_head(head_channels, image_channels))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.task.forward(self.encoder, self.decoder, self.head, inputs)
