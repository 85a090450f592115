"""Whole-volume prediction of a 3D network trained on cubes: sliding-window inference with Gaussian blending.

A volume is covered by windows of the training cube's side, neighbouring windows overlapping by half a window
(:data:`OVERLAP`); each voxel's logits are the average of the windows that cover it, weighted by a Gaussian centred
on each window (sigma an eighth of the window side), which trusts a window's centre over its borders, where it saw
less context. These are nnU-Net's settings (Isensee et al. 2021). A volume smaller than a window is zero-padded to it
and the padding cropped from the result. MONAI's ``sliding_window_inference`` does the tiling and blending.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

#: Share of a window that its neighbour overlaps, per axis (nnU-Net: 0.5).
OVERLAP = 0.5
#: How overlapping windows are blended: "gaussian" (nnU-Net) or "constant" (plain average).
BLEND = "gaussian"


def sliding_window_logits(
    predictor: Callable[[torch.Tensor], torch.Tensor],
    volume: np.ndarray,
    window: int,
    windows_per_pass: int,
    device: torch.device,
    overlap: float = OVERLAP,
    blend: str = BLEND,
) -> torch.Tensor:
    """Logits (K, x, y, z) on ``device`` of ``predictor`` (a network taking (N, C, w, w, w) cubes) for the whole
    ``volume`` (C, x, y, z), from cubes of side ``window``, ``windows_per_pass`` of them per forward pass."""
    from monai.inferers import sliding_window_inference

    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
    inputs = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None].to(device)
    logits = sliding_window_inference(
        inputs,
        roi_size=(window,) * 3,
        sw_batch_size=windows_per_pass,
        predictor=predictor,
        overlap=overlap,
        mode=blend,
        sigma_scale=0.125,
        padding_mode="constant",
        cval=0.0,
        progress=False,
    )
    return logits[0]
