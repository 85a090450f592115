"""Choose the torch device: CUDA when present (or asked for), else CPU."""

from __future__ import annotations

import torch

from benchmark.errors import UserError


def choose_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {requested}: CUDA is not available on this machine")
    try:
        return torch.device(requested)
    except RuntimeError as error:
        raise UserError(f"--device {requested!r}: {error}") from None
