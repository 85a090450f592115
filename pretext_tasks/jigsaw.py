"""``jigsaw`` (JS): Noroozi & Favaro 2016, "Unsupervised learning of visual representations by solving jigsaw puzzles".

Nine tiles are cut from a 3x3 grid with jitter (:mod:`pretext_tasks.patch_grid`), shuffled by one of
P permutations from a fixed maximal-Hamming-distance set (:mod:`pretext_tasks.permutations`), passed
one by one through the shared (siamese) encoder; the classifier sees their features concatenated
in the shuffled order and predicts the permutation's index (cross-entropy). Convention: the tile in
input position ``i`` is the grid cell ``permutation[i]``, so ``shuffled[:, argsort(permutation)]``
restores the grid order. Each tile is normalised to zero mean and unit variance per channel, as
Noroozi & Favaro did to stop the network from matching tiles by their intensity statistics. Only
the encoder transfers. The permutation set is saved with every pretrain run
(``pretext/jigsaw_permutations.csv``).

Adapted for medical images as Chen et al. (2019) did: tiles come from the 2D pretraining patches
(64x64 axial MR slices for BraTS), all channels move together. Noroozi's 64-pixel tiles in
75-pixel cells of a 225-pixel image become, with the default fractions, 16-pixel tiles, 5-pixel
gaps and 0-5 pixels of jitter on 64x64 images (jitter equal to the gap, as in Noroozi's layout).

3D form (Taleb et al. 2020, 3D jigsaw puzzles): 27 cubes of a 3x3x3 grid, shuffled by one of P permutations of 27
tiles (:mod:`pretext_tasks.permutations`), each cube normalised the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.patch_grid import PatchGridTask, crop_patches
from ssl_medbench.pretext_tasks.permutations import maximal_hamming_permutations

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_NORMALISATION_EPS = 1e-5


def normalise_tiles(tiles: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit standard deviation per tile and channel of ``tiles`` (B, K, C, *spatial) over its voxels;
    constant tiles become zero."""
    pixels = tiles.reshape(*tiles.shape[:3], -1)
    centred = pixels - pixels.mean(dim=-1, keepdim=True)
    std = (
        (centred * centred).mean(dim=-1, keepdim=True).sqrt()
    )  # two plain reductions: several times faster than torch.std on CPU
    return (centred / (std + _NORMALISATION_EPS)).view(tiles.shape)


@PRETEXT_TASKS.register("jigsaw")
class Jigsaw(PatchGridTask):
    """Recognise which of P permutations shuffled the nine tiles of a 3x3 grid (Noroozi & Favaro 2016)."""

    label = "JS"
    spatial_dims_supported = (2, 3)

    @dataclass(frozen=True)
    class Config:
        #: P: size of the maximal-Hamming-distance permutation set (Noroozi & Favaro: 100 by default).
        num_permutations: int = 100
        #: Tile side as a fraction of the image side.
        patch_fraction: float = 0.25
        #: Gap between neighbouring tiles (before jitter), fraction of the image side.
        gap_fraction: float = 0.08
        #: Maximum random shift of each tile per axis, fraction of the image side; at most the gap.
        jitter_fraction: float = 0.08
        #: Normalise each tile per channel (Noroozi & Favaro); switch off only to inspect raw tiles.
        normalise_tiles: bool = True

    def __init__(self, config: Jigsaw.Config | None = None):
        super().__init__(config)
        if not 2 <= self.config.num_permutations <= 1000:
            raise ValueError(f"num_permutations must lie in [2, 1000], got {self.config.num_permutations}")

    @property
    def inputs_per_example(self) -> int:
        """Tiles per example: 9, or 27 in 3D."""
        return 3**self.spatial_dims

    @property
    def permutations(self) -> np.ndarray:
        """(P, tiles) permutation set; row k is class k."""
        return maximal_hamming_permutations(self.config.num_permutations, self.inputs_per_example)

    @property
    def num_classes(self) -> int:
        return self.config.num_permutations

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        batch, sides = images.shape[0], tuple(images.shape[2:])
        grid = self.grid(*sides[-2:])
        tiles = crop_patches(images, grid.sample_corners(batch, sides, generator, images.device), grid.patch)
        labels = torch.randint(0, self.num_classes, (batch,), generator=generator, device=images.device)
        order = torch.tensor(self.permutations.tolist(), device=images.device)[labels]  # (B, tiles)
        shuffled = tiles[
            torch.arange(batch, device=images.device)[:, None], order
        ]  # input position i holds cell order[i]
        if self.config.normalise_tiles:
            shuffled = normalise_tiles(shuffled)
        return shuffled, labels

    def restore(self, tiles: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Undo permutation ``labels`` (B,) on shuffled ``tiles`` (B, 9 or 27, ...): grid order again."""
        order = torch.tensor(self.permutations.tolist(), device=tiles.device)[labels]
        return tiles[torch.arange(tiles.shape[0], device=tiles.device)[:, None], order.argsort(dim=1)]

    def preview(self, inputs: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor) -> Figure:
        """Per example: the tiles in input order, put back by the true permutation, and by the predicted one."""
        from ssl_medbench.pretext_tasks.preview import tile_grid_figure

        predicted = outputs.argmax(dim=1)
        first_channel = inputs[:, :, 0]
        arrangements = {
            "input order": first_channel,
            "true order": self.restore(first_channel, targets),
            "predicted order": self.restore(first_channel, predicted),
        }
        titles = [f"permutation {t} / predicted {p}" for t, p in zip(targets.tolist(), predicted.tolist())]
        return tile_grid_figure(arrangements, titles)

    def write_artifacts(self, folder: Path) -> None:
        header = "class," + ",".join(f"position_{i}" for i in range(self.inputs_per_example))
        rows = [f"{k}," + ",".join(map(str, row)) for k, row in enumerate(self.permutations.tolist())]
        (folder / "jigsaw_permutations.csv").write_text("\n".join([header, *rows]) + "\n")
