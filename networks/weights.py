"""Export and import the transferable weights of a pretext task.

Each part (``encoder``, ``decoder``) is saved as its own prefix-free state dict (keys relative to
that module, exactly as the module built by :func:`networks.create_encoder` names them) plus a
``manifest.json`` holding the architecture, the pretext task, its config, the seed and a SHA-256 of
every part's tensors. Import rebuilds the modules from the manifest, checks the hashes and loads
with ``strict=True``: a missing or unexpected key is an error, never a silent partial load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_medbench.core.atomic import atomic_path
from ssl_medbench.core.errors import DataError
from ssl_medbench.networks.encoder import EncoderConfig, create_encoder
from ssl_medbench.networks.unet_decoder import UNetDecoder

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the sorted keys, dtypes, shapes and raw bytes of every tensor (independent of file format)."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def export_weights(
    folder: Path,
    parts: Mapping[str, nn.Module],
    encoder_config: EncoderConfig,
    in_chans: int,
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    """Write ``<part>.pt`` for each part and ``manifest.json``; returns the manifest."""
    unknown = set(parts) - {"encoder", "decoder"}
    if unknown or "encoder" not in parts:
        raise ValueError(f"parts must be 'encoder' and optionally 'decoder', got {sorted(parts)}")
    folder.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "encoder": encoder_config.to_dict(),
        "in_chans": in_chans,
        "parts": {},
        **metadata,
    }
    for name, module in parts.items():
        state = {key: value.detach().cpu() for key, value in module.state_dict().items()}
        file_name = f"{name}.pt"
        with atomic_path(folder / file_name) as temporary:
            torch.save(state, temporary)
        manifest["parts"][name] = {"file": file_name, "sha256": state_dict_sha256(state), "tensors": len(state)}
        if isinstance(module, UNetDecoder):
            manifest["parts"][name]["architecture"] = {
                "type": "unet",
                "channels": module.channels,
                "reductions": module.reductions,
                "spatial_dims": module.spatial_dims,
            }
    with atomic_path(folder / MANIFEST_NAME) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{path}: no weight manifest (expected the output of a pretrain job)")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError):
        raise DataError(f"{path}: not a JSON weight manifest; the file is corrupt or was changed") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        found = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise DataError(f"{path}: format_version {found!r}, expected {FORMAT_VERSION}")
    return manifest


def _verified_state(path: Path, sha256: str) -> dict[str, torch.Tensor]:
    """The state dict saved at ``path``; DataError naming the file if it cannot be read or its SHA-256 differs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # arbitrary bytes make the unpickler raise almost anything (IndexError, KeyError...)
        raise DataError(f"{path}: cannot be read as saved weights ({type(error).__name__})") from None
    if not isinstance(state, dict) or state_dict_sha256(state) != sha256:
        raise DataError(f"{path}: SHA-256 differs from the manifest; the file is corrupt or was changed")
    return state


def load_part(folder: Path, manifest: Mapping[str, Any], name: str, module: nn.Module) -> None:
    """Load part ``name`` into ``module`` with ``strict=True`` after checking its SHA-256."""
    entry = manifest["parts"].get(name)
    if entry is None:
        raise DataError(f"{folder / MANIFEST_NAME}: has no part {name!r} (parts: {sorted(manifest['parts'])})")
    module.load_state_dict(_verified_state(folder / entry["file"], entry["sha256"]), strict=True)


def missing_weight_files(folder: Path) -> list[str]:
    """The files of an export that are not in ``folder``: the manifest, or the part files it names."""
    if not (folder / MANIFEST_NAME).is_file():
        return [MANIFEST_NAME]
    try:
        parts = read_manifest(folder)["parts"]
    except DataError:
        return []
    return [entry["file"] for entry in parts.values() if not (folder / entry["file"]).is_file()]


def mismatched_weight_files(folder: Path) -> list[str]:
    """The files of a complete export in ``folder`` that do not match the manifest (an unreadable manifest: itself)."""
    try:
        parts = read_manifest(folder)["parts"]
    except DataError:
        return [MANIFEST_NAME]
    mismatched = []
    for entry in parts.values():
        try:
            _verified_state(folder / entry["file"], entry["sha256"])
        except DataError:
            mismatched.append(entry["file"])
    return mismatched


def import_weights(folder: Path) -> tuple[dict[str, Any], nn.Module, UNetDecoder | None]:
    """Rebuild the encoder (and decoder, if exported) from a manifest and load their weights strictly."""
    manifest = read_manifest(folder)
    encoder_config = EncoderConfig(**manifest["encoder"])
    encoder = create_encoder(encoder_config, manifest["in_chans"])
    load_part(folder, manifest, "encoder", encoder)
    decoder = None
    if "decoder" in manifest["parts"]:
        decoder = UNetDecoder.for_encoder(encoder)
        load_part(folder, manifest, "decoder", decoder)
    return manifest, encoder, decoder
