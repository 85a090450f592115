"""Choose the torch device (CUDA when present or asked for, else CPU) and how reproducible its kernels are."""

from __future__ import annotations

import os

import torch

from ssl_medbench.core.errors import UserError


def choose_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {requested}: CUDA is not available on this machine")
    try:
        return torch.device(requested)
    except RuntimeError as error:
        raise UserError(f"--device {requested!r}: {error}") from None


def check_deterministic(enabled: bool, spatial_dims: int, gpu_possible: bool) -> None:
    """UserError for ``--deterministic`` with a 3D grid whose jobs may run on a GPU: torch has no deterministic CUDA
    backward for 3D max-pooling, adaptive average pooling or trilinear upsampling, so every 3D job would fail there."""
    if enabled and spatial_dims == 3 and gpu_possible:
        raise UserError(
            "--deterministic: torch has no deterministic CUDA backward for 3D max-pooling (MaxPool3d), so every job of "
            "a 3D grid would fail on a GPU; run it without --deterministic, or with --device cpu (CPU runs are "
            "deterministic anyway)"
        )


def set_deterministic(enabled: bool) -> None:
    """``--deterministic``: only deterministic kernels (CUDA runs then reproduce bit for bit; expect them slower,
    often by 10-30 %, and an error from an operation that has no deterministic implementation); cuDNN autotuning off.
    On the CPU the suite's runs are deterministic anyway."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled and torch.cuda.is_available()
