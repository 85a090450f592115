"""Write a generated dataset folder once: built under a temporary name, renamed when complete.

An interrupted run never leaves a half-written dataset that a later run would take for finished;
a finished folder whose recorded settings equal the requested ones is reused as it is, also when another run (a second
driver on the same run folder) finished writing it while this one was still generating its own copy.

The suite only removes what it wrote. A folder it generated holds the marker ``phantom.json``: the generator's
settings plus ``_written_by`` and ``_entries``, the names it wrote. A folder is regenerated (for other settings)
only when it holds nothing but those entries; an existing, non-empty ``root`` without such a marker (real data, a
stray marker, a marker of an older version), or one holding anything the suite did not write (notes, a run folder),
is a DataError naming it, and nothing in it is touched.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssl_medbench.core.errors import DataError

MARKER = "phantom.json"
WRITER = "ssl-medbench"


def _marker(root: Path) -> dict[str, Any] | None:
    """The JSON object in ``root``'s marker; None if the marker is missing or not a JSON object."""
    try:
        recorded = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def _settings(marker: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in marker.items() if not key.startswith("_")}


def _foreign_entries(root: Path) -> list[str]:
    """Names in ``root`` that this suite did not write there (all of them when its marker is not the suite's)."""
    present = sorted(path.name for path in root.iterdir())
    marker = _marker(root)
    if marker is None or marker.get("_written_by") != WRITER or not isinstance(marker.get("_entries"), list):
        return present
    return [name for name in present if name not in {*marker["_entries"], MARKER}]


def check_ours(root: Path, dataset: str = "") -> None:
    """DataError unless ``root`` is absent, an empty folder, or a folder holding only what this suite generated."""
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        return
    named = f" for dataset '{dataset}'" if dataset else ""
    if not root.is_dir() or _marker(root) is None:
        raise DataError(
            f"{root}: exists and was not written by ssl-medbench (no {MARKER}); choose an empty or new folder{named}"
        )
    foreign = _foreign_entries(root)
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise DataError(
            f"{root}: holds files ssl-medbench did not write ({shown}), so it is not regenerated; "
            f"choose an empty or new folder{named}"
        )


def build_once(root: Path, settings: dict[str, Any], write: Callable[[Path], None]) -> Path:
    """``write(folder)`` fills a fresh temporary folder that becomes ``root``, unless ``root`` already holds these
    ``settings``; DataError naming ``root`` if it holds anything this suite did not write."""
    recorded = json.loads(json.dumps(settings))  # compared as JSON, where a tuple setting reads back as a list
    marker = _marker(root) if root.is_dir() else None
    if marker is not None and _settings(marker) == recorded:
        return root
    check_ours(root)
    target = root.resolve()  # a symlinked root is written where it points
    if target.exists():
        shutil.rmtree(target)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write(partial)
    entries = sorted(path.name for path in partial.iterdir())
    (partial / MARKER).write_text(json.dumps({**recorded, "_written_by": WRITER, "_entries": entries}, indent=2))
    try:
        os.replace(partial, target)
    except OSError as error:  # another run (a second driver on the same folder) renamed its copy there first
        winner = _marker(target) if target.is_dir() else None
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or winner is None:
            raise
        shutil.rmtree(partial, ignore_errors=True)
        if _settings(winner) != recorded:
            raise DataError(
                f"{root}: another run wrote it with other settings while this one generated it; give each its own folder"
            ) from None
    return root
