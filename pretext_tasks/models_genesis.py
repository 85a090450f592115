"""``models_genesis`` (MG): Zhou et al. 2019/2021, "Models Genesis: Generic Autodidactic Models for 3D Medical Image
Analysis" (MICCAI 2019; Medical Image Analysis 67, 101840, 2021).

The network restores the original image from one corrupted by, in the order of the authors' code
(github.com/MrGiovanni/ModelsGenesis, ``generate_pair``), each with its own probability per image:

1. **local pixel shuffling** (0.5): pixels are shuffled within small blocks, so the global shape survives and the
   local texture does not;
2. **non-linear intensity transformation** (0.9): intensities, rescaled to [0, 1] per image and channel, go through a
   Bézier curve from (0, 0) to (1, 1) with two random control points, increasing or (half of the times) decreasing,
   and back to the image's range;
3. **painting** (0.9): out-painting (0.8 of the paintings; uniform noise everywhere but in one box of 3/7 to 4/7 of
   each side and up to four more) or in-painting (0.2; up to five boxes of 1/6 to 1/3 of each side filled with
   uniform noise). Each further box is drawn with probability 0.95, as in the authors' code.

L2 restoration loss; the encoder and the decoder transfer, as for context restoration.

Adapted to our 2D views: the authors shuffle 10 000 random blocks of up to a tenth of each side of a 3D cube; here
each image is tiled by blocks of a random height and width (1 to ``max_block_fraction`` of the side, per image, the
tiling offset at random) and every block is shuffled, which covers the image as their overlapping blocks do, in one
vectorised gather. Noise is uniform over the image's own intensity range (theirs over [0, 1], their images' range).
Their flips of input and target together are a data augmentation, not a corruption, and are left out, as for the
other pretext tasks.

3D form: the transformations Models Genesis was made for, on volumes: the blocks of the local shuffle, the painted
boxes and the kept boxes of out-painting are cuboids with the same shares of each of the three sides; the local shuffle
is the same tiling of the volume as in 2D, not the authors' 10 000 random blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import ReconstructionTask
from ssl_medbench.pretext_tasks.box_indices import box_masks_at, gather_voxels

#: Points at which each Bézier curve is evaluated before interpolation (the authors: 100 000 on a CPU array).
CURVE_POINTS = 1024
#: Boxes per painting and the probability of drawing each next one (the authors' ``cnt`` and 0.95).
MAX_BOXES = 5
NEXT_BOX_PROBABILITY = 0.95


def _uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def shuffle_within_blocks(
    images: torch.Tensor, block_sides: torch.Tensor, offsets: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """``images`` (B, C, *spatial) with the voxels of every block shuffled among themselves, all channels together.

    Image b is tiled by blocks of ``block_sides[b]`` voxels along each spatial axis, the tiling shifted by
    ``offsets[b]``; a block of one voxel is left as it is.
    """
    batch, sides = images.shape[0], images.shape[2:]
    device = images.device
    dims = len(sides)
    tiles = torch.zeros((batch,) + (1,) * dims, dtype=torch.long, device=device)
    for axis, extent in enumerate(sides):
        shape = (1, *(extent if other == axis else 1 for other in range(dims)))
        broadcast = (batch,) + (1,) * dims
        positions = torch.arange(extent, device=device).view(shape)
        tile = (positions + offsets[:, axis].view(broadcast)) // block_sides[:, axis].view(broadcast)
        tiles = tiles * (extent + 1) + tile
    tiles = tiles.reshape(batch, -1)
    pixels = tiles.shape[1]
    raster = torch.arange(pixels, device=device).expand(batch, -1)
    # Positions grouped by block in raster order, and the same blocks' pixels in a random order: the k-th position of
    # a block shows the k-th pixel of that block's random order.
    positions = torch.argsort(tiles * pixels + raster, dim=1, stable=True)
    keys = torch.randint(0, pixels, (batch, pixels), generator=generator, device=device)
    sources = torch.argsort(tiles * pixels + keys, dim=1, stable=True)
    source = torch.empty_like(positions).scatter_(1, positions, sources)
    return gather_voxels(images, source)


def bezier_curves(batch: int, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, a cubic Bézier curve from (0, 0) to (1, 1) with two control points uniform in the unit square,
    sampled at :data:`CURVE_POINTS` values of its parameter: (x, y) of shape (batch, CURVE_POINTS) each."""
    controls = _uniform((batch, 2, 2), generator, device)
    t = torch.linspace(0, 1, CURVE_POINTS, device=device)[None, :]
    weights = (3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3)
    x = weights[0] * controls[:, 0, 0, None] + weights[1] * controls[:, 1, 0, None] + weights[2]
    y = weights[0] * controls[:, 0, 1, None] + weights[1] * controls[:, 1, 1, None] + weights[2]
    return x, y


def intensity_mapping(x: torch.Tensor, y: torch.Tensor, decreasing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' mapping from a curve: its x values sorted, against its y values sorted (increasing) or in the
    order of the parameter from (1, 1) to (0, 0) (decreasing, for images where ``decreasing`` is True)."""
    sorted_y = torch.where(decreasing[:, None], torch.flip(y, dims=[1]), torch.sort(y, dim=1).values)
    return torch.sort(x, dim=1).values, sorted_y


def lookup_tables(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Each image's mapping (points ``xs`` increasing, ``ys``) sampled at :data:`CURVE_POINTS` evenly spaced values of
    [0, 1] by piecewise-linear interpolation: (B, CURVE_POINTS)."""
    grid = torch.linspace(0, 1, CURVE_POINTS, device=xs.device).expand(xs.shape[0], -1).contiguous()
    right = torch.searchsorted(xs.contiguous(), grid).clamp(1, xs.shape[1] - 1)
    left = right - 1
    x0, x1, y0, y1 = xs.gather(1, left), xs.gather(1, right), ys.gather(1, left), ys.gather(1, right)
    share = ((grid - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0, 1)
    return y0 + share * (y1 - y0)


def apply_tables(values: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """``values`` (B, N) in [0, 1] through each image's table (B, P) of evenly spaced samples, linearly between them."""
    position = values * (tables.shape[1] - 1)
    left = position.long().clamp_(0, tables.shape[1] - 2)
    share = position.sub_(left)
    low = tables.gather(1, left)
    return tables.gather(1, left.add_(1)).sub_(low).mul_(share).add_(low)


def nonlinear_intensity(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Every channel of image b mapped through image b's curve (:func:`bezier_curves`, :func:`intensity_mapping`) after
    rescaling it to [0, 1], then put back in its own range."""
    batch = images.shape[0]
    spatial = tuple(range(2, images.ndim))
    low = images.amin(dim=spatial, keepdim=True)
    span = (images.amax(dim=spatial, keepdim=True) - low).clamp_min(1e-12)
    x, y = bezier_curves(batch, generator, images.device)
    decreasing = _uniform((batch,), generator, images.device) < 0.5
    tables = lookup_tables(*intensity_mapping(x, y, decreasing))
    unit = (images - low).div_(span).reshape(batch, -1)
    return apply_tables(unit, tables).reshape(images.shape).mul_(span).add_(low)


def box_masks(
    batch: int,
    image_sides: Sequence[int],
    sides: tuple[float, float],
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """:data:`MAX_BOXES` boxes per image of ``image_sides``, each side between ``sides`` (shares of the image's) at a
    random place inside it: masks (batch, MAX_BOXES, *image_sides)."""
    dims = len(image_sides)
    size = torch.tensor(list(image_sides), device=device, dtype=torch.float32)
    low, high = sides
    extent = ((low + (high - low) * _uniform((batch, MAX_BOXES, dims), generator, device)) * size).long().clamp_min(1)
    start = (_uniform((batch, MAX_BOXES, dims), generator, device) * (size.long() - extent + 1)).long()
    return box_masks_at(start, start + extent, image_sides)


def drawn_boxes(batch: int, generator: torch.Generator, device: torch.device, first_always: bool) -> torch.Tensor:
    """Which of the :data:`MAX_BOXES` boxes each image draws (batch, MAX_BOXES): box k is drawn if every draw up to
    it continued (probability :data:`NEXT_BOX_PROBABILITY` each); with ``first_always`` the first box needs no draw."""
    continued = _uniform((batch, MAX_BOXES), generator, device) < NEXT_BOX_PROBABILITY
    if first_always:
        continued[:, 0] = True
    return torch.cumprod(continued.long(), dim=1).bool()


def painted(images: torch.Tensor, outpaint: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """In-painting (noise inside up to five boxes of 1/6 to 1/3 of each side) or, for images where ``outpaint``,
    out-painting (noise everywhere but inside one box of 3/7 to 4/7 of each side and up to four more). Noise is
    uniform over each image and channel's own intensity range."""
    batch, sides = images.shape[0], tuple(images.shape[2:])
    device = images.device
    spatial = tuple(range(2, images.ndim))
    trailing = (None,) * len(sides)
    low = images.amin(dim=spatial, keepdim=True)
    high = images.amax(dim=spatial, keepdim=True)
    noise = low + (high - low) * _uniform(tuple(images.shape), generator, device)
    inner = box_masks(batch, sides, (1 / 6, 1 / 3), generator, device)
    inner = (inner & drawn_boxes(batch, generator, device, first_always=False)[(..., *trailing)]).any(dim=1)
    kept = box_masks(batch, sides, (3 / 7, 4 / 7), generator, device)
    kept = (kept & drawn_boxes(batch, generator, device, first_always=True)[(..., *trailing)]).any(dim=1)
    noisy = torch.where(outpaint[(slice(None), *trailing)], ~kept, inner)
    return torch.where(noisy[:, None], noise, images)


@PRETEXT_TASKS.register("models_genesis")
class ModelsGenesis(ReconstructionTask):
    """Restore images after local shuffling, a non-linear intensity curve and in- or out-painting (Zhou et al.)."""

    label = "MG"
    spatial_dims_supported = (2, 3)

    @dataclass(frozen=True)
    class Config(ReconstructionTask.Config):
        #: Probability that an image is locally shuffled (the authors' ``local_rate``).
        local_shuffle_probability: float = 0.5
        #: Largest block side as a share of the image side (the authors: a tenth).
        max_block_fraction: float = 0.1
        #: Probability of the non-linear intensity transformation (``nonlinear_rate``).
        nonlinear_probability: float = 0.9
        #: Probability of painting (``paint_rate``).
        paint_probability: float = 0.9
        #: Share of the paintings that are out-paintings (``outpaint_rate``); the rest are in-paintings.
        outpaint_fraction: float = 0.8

    def __init__(self, config: ModelsGenesis.Config | None = None):
        super().__init__(config)
        for name in ("local_shuffle_probability", "nonlinear_probability", "paint_probability"):
            value = getattr(self.config, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")

    def check_image_size(self, height: int, width: int) -> None:
        if min(height, width) < 7:
            raise ValueError(f"Models Genesis paints boxes of 1/6 to 4/7 of the side: {height}x{width} is too small")

    def geometry(self, side: int) -> dict[str, int | float]:
        """Largest shuffled block side, largest in-painted box side and smallest side of out-painting's first kept box,
        in pixels."""
        return {
            "max_block_px": max(1, int(side * self.config.max_block_fraction)),
            "inpaint_box_max_px": int(side / 3),
            "outpaint_kept_box_min_px": int(side * 3 / 7),
        }

    def corrupt(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The corrupted batch and, per image, which transformations it got (``shuffled``, ``nonlinear``,
        ``painted``, ``outpainted``: boolean (B,) each)."""
        batch, sides = images.shape[0], tuple(images.shape[2:])
        device = images.device
        config = self.config
        applied = {
            "shuffled": _uniform((batch,), generator, device) < config.local_shuffle_probability,
            "nonlinear": _uniform((batch,), generator, device) < config.nonlinear_probability,
            "painted": _uniform((batch,), generator, device) < config.paint_probability,
        }
        applied["outpainted"] = applied["painted"] & (_uniform((batch,), generator, device) < config.outpaint_fraction)
        longest = torch.tensor(list(sides), device=device) * config.max_block_fraction
        longest = longest.long().clamp_min(1)
        blocks = 1 + (_uniform((batch, len(sides)), generator, device) * longest).long()
        offsets = (_uniform((batch, len(sides)), generator, device) * blocks).long()
        corrupted = images.clone()
        for name, transform in (
            ("shuffled", lambda i: shuffle_within_blocks(corrupted[i], blocks[i], offsets[i], generator)),
            ("nonlinear", lambda i: nonlinear_intensity(corrupted[i], generator)),
            ("painted", lambda i: painted(corrupted[i], applied["outpainted"][i], generator)),
        ):
            chosen = applied[name].nonzero().squeeze(1)
            if len(chosen):  # only the chosen images are transformed (and draw from the generator)
                corrupted[chosen] = transform(chosen)
        return corrupted, applied

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.corrupt(images, generator)[0], images
