"""``simclr`` (CL): contrastive learning after Chen et al. 2020, "A simple framework for contrastive learning of visual
representations" (SimCLR, ICML).

Each image of a batch is augmented twice; both views go through the shared encoder, their deepest features are
average-pooled and mapped by a projection head (two linear layers with a ReLU between, SimCLR's MLP); the NT-Xent loss
(normalised temperature-scaled cross-entropy) makes each view pick its partner among the other 2B - 1 views of the
batch. Only the encoder transfers (SimCLR discards the projection head). The OpenMind benchmark (Wald et al. 2025)
finds contrastive methods the strongest pretraining for classification.

Augmentations for greyscale medical images (SimCLR's colour distortion has no meaning for MR or CT channels, whose
values are physical): a random resized crop (area 35-100 % of the image, aspect ratio 3/4-4/3, resized back) with a
horizontal flip (0.5); per channel, a random contrast (x 0.6-1.4) and brightness (+-0.4 of the normalised intensity)
change; a Gaussian blur (sigma 1 pixel, probability 0.5); Gaussian noise (sigma 0.1). All channels share the geometry.
Temperature 0.5, SimCLR's value for small batches (its 0.1 needs batches of thousands); projection to 128 dimensions.

3D form (as the 3D contrastive baselines of Taleb et al. 2020 and OpenMind / nnssl, Wald et al. 2025): the same
augmentations on volumes: a random resized cuboid crop (35-100 % of the volume, :func:`random_resized_cuboids`), a
left-right flip, the same intensity changes, a 3D Gaussian blur and noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import BatchSpec, PretextTask, TensorSpec, forward_each_input

if TYPE_CHECKING:
    from matplotlib.figure import Figure

VIEWS = 2


def nt_xent(embeddings: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent loss of ``embeddings`` (B, 2, D): view 0 of image b and view 1 of image b are a positive pair; every other
    view of the batch is a negative. Returns the loss (mean over the 2B views) and the share of views whose most similar
    other view is their partner."""
    batch = embeddings.shape[0]
    z = F.normalize(embeddings.transpose(0, 1).reshape(VIEWS * batch, -1), dim=1)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(-math.inf)
    partner = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(embeddings.device)
    loss = F.cross_entropy(similarity, partner)
    accuracy = (similarity.detach().argmax(dim=1) == partner).float().mean()
    return loss, accuracy


def random_resized_crops(images: torch.Tensor, scale: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """Per image, a crop of ``scale`` of its area (aspect ratio 3/4 to 4/3, placed at random) resized back to the image's
    size and flipped left-right with probability 0.5, by one bilinear ``grid_sample`` for the whole batch."""
    batch = images.shape[0]
    device = images.device
    draws = torch.rand(batch, 5, generator=generator, device=device)
    area = scale[0] + (scale[1] - scale[0]) * draws[:, 0]
    aspect = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * draws[:, 1])
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    centre_x = (2 * draws[:, 2] - 1) * (1 - width)
    centre_y = (2 * draws[:, 3] - 1) * (1 - height)
    flip = torch.where(draws[:, 4] < 0.5, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 2] = width * flip, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


#: Draws of a cuboid per volume before the whole volume is taken (torchvision's RandomResizedCrop tries 10 times).
CUBOID_ATTEMPTS = 10


def random_resized_cuboids(
    volumes: torch.Tensor, scale: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """Per volume (B, C, X, Y, Z), a cuboid of a share of its volume drawn uniformly from ``scale``, resized back to the
    volume's size and flipped left-right (along X) with probability 0.5, by one trilinear ``grid_sample`` for the whole
    batch. The cuboid's X and Y sides are each the cube root of the share times 3/4 to 4/3 (log-uniformly), its Z side
    what the share leaves; a cuboid that would not fit is drawn again, up to :data:`CUBOID_ATTEMPTS` times, then the
    whole volume is taken, as torchvision's ``RandomResizedCrop`` does. The cuboid's place is uniform."""
    batch = volumes.shape[0]
    device = volumes.device
    draws = torch.rand(batch, CUBOID_ATTEMPTS, 3, generator=generator, device=device)
    share = scale[0] + (scale[1] - scale[0]) * draws[..., 0]
    log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * draws[..., 1:]
    x_side = share ** (1 / 3) * torch.exp(log_ratio[..., 0])
    y_side = share ** (1 / 3) * torch.exp(log_ratio[..., 1])
    z_side = share / (x_side * y_side)
    sides = torch.stack([x_side, y_side, z_side], dim=-1)  # (B, attempts, 3)
    fits = (sides <= 1).all(dim=-1)
    first = torch.where(fits.any(dim=1), fits.float().argmax(dim=1), -1)
    chosen = sides[torch.arange(batch, device=device), first.clamp(min=0)]
    chosen = torch.where((first >= 0)[:, None], chosen, torch.ones_like(chosen))
    places = torch.rand(batch, 4, generator=generator, device=device)
    flip = torch.where(places[:, 3] < 0.5, -1.0, 1.0)
    theta = torch.zeros(batch, 3, 4, device=device)
    # the sampling grid's coordinates are (z, y, x): row 0 samples along Z, row 2 along X
    for row, axis in enumerate((2, 1, 0)):
        extent = chosen[:, axis]
        theta[:, row, row] = extent * (flip if axis == 0 else 1.0)
        theta[:, row, 3] = (2 * places[:, axis] - 1) * (1 - extent)
    grid = F.affine_grid(theta, list(volumes.shape), align_corners=False)
    return F.grid_sample(volumes, grid, mode="bilinear", padding_mode="border", align_corners=False)


def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each channel of ``images`` (B, C, *spatial) convolved with a Gaussian of ``sigma`` pixels along every spatial
    axis in turn (kernel of 2 * ceil(2 sigma) + 1, border replicated)."""
    radius = math.ceil(2 * sigma)
    taps = torch.exp(
        -(torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype) ** 2) / (2 * sigma**2)
    )
    taps = taps / taps.sum()
    channels, dims = images.shape[1], images.ndim - 2
    convolve = F.conv2d if dims == 2 else F.conv3d
    blurred_images = F.pad(images, (radius,) * 2 * dims, mode="replicate")
    for axis in range(dims):
        shape = (1, 1, *(-1 if other == axis else 1 for other in range(dims)))
        blurred_images = convolve(
            blurred_images, taps.view(shape).repeat(channels, *(1,) * (dims + 1)), groups=channels
        )
    return blurred_images


class ProjectionHead(nn.Module):
    """(B, K, F, *spatial) deepest features of K views -> (B, K, out) projections: average pool, Linear-ReLU-Linear."""

    def __init__(self, in_channels: int, hidden: int = 256, out: int = 128):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.project(features.mean(dim=tuple(range(3, features.ndim))))


@PRETEXT_TASKS.register("simclr")
class SimCLR(PretextTask):
    """Tell each augmented view's partner from the other views of the batch (NT-Xent; Chen et al. 2020)."""

    label = "CL"
    spatial_dims_supported = (2, 3)

    @dataclass(frozen=True)
    class Config:
        #: NT-Xent temperature (SimCLR: 0.5 for small batches).
        temperature: float = 0.5
        #: Smallest share of the image's area a crop keeps (the largest is all of it).
        min_crop_fraction: float = 0.35
        #: Contrast factor range is 1 -+ this; brightness shift range is +- this (normalised intensities).
        intensity_jitter: float = 0.4
        #: Probability of the Gaussian blur (sigma 1 pixel).
        blur_probability: float = 0.5
        #: Standard deviation of the added Gaussian noise (normalised intensities).
        noise_std: float = 0.1

    def __init__(self, config: SimCLR.Config | None = None):
        super().__init__(config)
        if not self.config.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.config.temperature}")
        if not 0 < self.config.min_crop_fraction <= 1:
            raise ValueError(f"min_crop_fraction must lie in (0, 1], got {self.config.min_crop_fraction}")
        if not 0 <= self.config.intensity_jitter < 1:
            raise ValueError(f"intensity_jitter must lie in [0, 1), got {self.config.intensity_jitter}")
        if not 0 <= self.config.blur_probability <= 1:
            raise ValueError(f"blur_probability must lie in [0, 1], got {self.config.blur_probability}")
        if not self.config.noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {self.config.noise_std}")

    def geometry(self, side: int) -> dict[str, int | float]:
        """Side in pixels of the smallest square crop (cube root of the smallest cuboid's share in 3D), before it is
        resized back to the view."""
        fraction = self.config.min_crop_fraction
        share = math.sqrt(fraction) if self.spatial_dims == 2 else fraction ** (1 / 3)
        return {"min_crop_px": round(side * share)}

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One augmented view of every image (B, C, *spatial), as the module docstring lists."""
        config = self.config
        batch, channels = images.shape[:2]
        device = images.device
        crop = random_resized_crops if images.ndim == 4 else random_resized_cuboids
        view = crop(images, (config.min_crop_fraction, 1.0), generator)
        draws = torch.rand(batch, channels, 2, generator=generator, device=device) * 2 - 1
        trailing = (None,) * (images.ndim - 2)
        contrast = 1 + config.intensity_jitter * draws[(..., 0, *trailing)]
        brightness = config.intensity_jitter * draws[(..., 1, *trailing)]
        view = view.mul_(contrast).add_(brightness)
        chosen = (torch.rand(batch, generator=generator, device=device) < config.blur_probability).nonzero().squeeze(1)
        if len(chosen):
            view[chosen] = blurred(view[chosen], 1.0)
        noise = torch.randn(view.shape, generator=generator, device=device)
        return view.add_(noise.mul_(config.noise_std))

    def batch_spec(self, images_shape: tuple[int, ...]) -> BatchSpec:
        batch = images_shape[0]
        return BatchSpec(
            TensorSpec((batch, VIEWS, *images_shape[1:]), torch.float32), TensorSpec((batch,), torch.int64)
        )

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (B, 2, C, *spatial): two views of every image; targets (B,): each image's index, its pair's identity."""
        views = torch.stack([self.augment(images, generator) for _ in range(VIEWS)], dim=1)
        return views, torch.arange(images.shape[0], device=images.device)

    def build_head(self, in_channels: int, image_channels: int) -> nn.Module:
        return ProjectionHead(in_channels)

    def forward(
        self, encoder: nn.Module, decoder: nn.Module | None, head: nn.Module, inputs: torch.Tensor
    ) -> torch.Tensor:
        return forward_each_input(encoder, head, inputs)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        loss, accuracy = nt_xent(outputs, self.config.temperature)
        return {"loss": loss, "pair_accuracy": accuracy}

    def preview(self, inputs: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor) -> Figure:
        from ssl_medbench.pretext_tasks.preview import classification_figure

        z = F.normalize(outputs.detach(), dim=-1)
        agreement = (z[:, 0] * z[:, 1]).sum(dim=1).tolist()
        return classification_figure(inputs, [f"two views; cosine similarity {a:.2f}" for a in agreement])
