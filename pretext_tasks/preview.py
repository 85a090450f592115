"""Preview figures of a pretext task's examples, logged by every pretrain job as ``preview.png``.

They are for looking: does the corruption do what the paper describes, and does the trained network
restore images or predict labels sensibly? Images show the first channel (e.g. T1 for BraTS),
each example on the grey scale of its original; a volume (3D form) shows its middle slice along its first axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

MAX_EXAMPLES = 4


def _show(axis, image: torch.Tensor, vmin: float, vmax: float, title: str = "") -> None:
    if image.ndim == 3:
        image = image[image.shape[0] // 2]
    axis.imshow(image.detach().float().cpu().numpy(), cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([])
    if title:
        axis.set_title(title, fontsize=8)


def reconstruction_figure(originals: torch.Tensor, inputs: torch.Tensor, outputs: torch.Tensor) -> Figure:
    """Columns: examples; rows: original, network input (corrupted), network output; tensors (B, C, H, W)."""
    count = min(MAX_EXAMPLES, originals.shape[0])
    figure = Figure(figsize=(2.2 * count, 6.6), layout="constrained")
    axes = figure.subplots(3, count, squeeze=False)
    for column in range(count):
        original = originals[column, 0]
        vmin, vmax = float(original.min()), float(original.max())
        for row, (name, batch) in enumerate((("original", originals), ("input", inputs), ("output", outputs))):
            _show(axes[row, column], batch[column, 0], vmin, vmax, name if column == 0 else "")
    return figure


def classification_figure(inputs: torch.Tensor, titles: Sequence[str]) -> Figure:
    """One row per example: its K crops (B, K, C, h, w) in input order, titled with true and predicted class."""
    count = min(MAX_EXAMPLES, inputs.shape[0])
    crops = inputs.shape[1]
    figure = Figure(figsize=(max(1.3 * crops, 4.0), 1.6 * count), layout="constrained")
    rows = figure.subfigures(count, 1, squeeze=False)[:, 0]
    for example, row in enumerate(rows):
        row.suptitle(titles[example], fontsize=9)
        axes = row.subplots(1, crops, squeeze=False)[0]
        values = inputs[example, :, 0]
        vmin, vmax = float(values.min()), float(values.max())
        for index, axis in enumerate(axes):
            _show(axis, values[index], vmin, vmax, str(index))
    return figure


def _mosaic(tiles: torch.Tensor) -> torch.Tensor:
    """Nine tiles (9, h, w) laid out as the 3x3 grid, one NaN pixel between tiles."""
    _, height, width = tiles.shape
    canvas = torch.full((3 * height + 2, 3 * width + 2), float("nan"))
    for index in range(9):
        row, col = divmod(index, 3)
        canvas[row * (height + 1) : row * (height + 1) + height, col * (width + 1) : col * (width + 1) + width] = tiles[
            index
        ]
    return canvas


def tile_grid_figure(arrangements: dict[str, torch.Tensor], titles: Sequence[str]) -> Figure:
    """Columns: examples (titled); rows: named arrangements (B, 9, h, w) of the nine tiles, each shown as a 3x3 grid.
    In 3D, arrangements of 27 tiles (B, 27, d, h, w): the nine of the middle layer, each at its middle slice."""
    first = next(iter(arrangements.values()))
    count = min(MAX_EXAMPLES, first.shape[0])
    figure = Figure(figsize=(2.6 * count, 2.6 * len(arrangements)), layout="constrained")
    axes = figure.subplots(len(arrangements), count, squeeze=False)
    for column in range(count):
        vmin, vmax = float(first[column].min()), float(first[column].max())
        for row, (name, tiles) in enumerate(arrangements.items()):
            title = f"{name}\n{titles[column]}" if row == 0 else name
            shown = tiles[column] if tiles.shape[1] == 9 else tiles[column, 9:18, tiles.shape[2] // 2]
            _show(axes[row, column], _mosaic(shown), vmin, vmax, title)
    return figure
