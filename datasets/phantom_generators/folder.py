"""Write a generated dataset folder once: built under a temporary name, renamed when complete.

An interrupted run never leaves a half-written dataset that a later run would take for finished;
a finished folder whose recorded settings equal the requested ones is reused as it is.

The suite only removes what it wrote: a folder it generated holds the marker ``phantom.json``. An existing,
non-empty ``root`` without that marker (real data, say) is a DataError, never overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssl_medbench.core.errors import DataError

MARKER = "phantom.json"


def _recorded_settings(root: Path) -> Any:
    """The settings in ``root``'s marker; None if the marker is missing or unreadable."""
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None


def check_ours(root: Path, dataset: str = "") -> None:
    """DataError unless ``root`` is absent, an empty folder, or a folder this suite generated (it holds the marker)."""
    if not root.exists() or (root / MARKER).is_file() or (root.is_dir() and not any(root.iterdir())):
        return
    named = f" for dataset '{dataset}'" if dataset else ""
    raise DataError(
        f"{root}: exists and was not written by ssl-medbench (no {MARKER}); choose an empty or new folder{named}"
    )


def build_once(root: Path, settings: dict[str, Any], write: Callable[[Path], None]) -> Path:
    """``write(folder)`` fills a fresh temporary folder that becomes ``root``, unless ``root`` already holds these
    ``settings``; DataError naming ``root`` if it holds files this suite did not write."""
    recorded = json.dumps(settings, indent=2)
    # compared as JSON, where a tuple setting reads back as a list
    if _recorded_settings(root) == json.loads(recorded):
        return root
    check_ours(root)
    target = root.resolve()  # a symlinked root is written where it points
    if target.exists():
        shutil.rmtree(target)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write(partial)
    (partial / MARKER).write_text(recorded)
    os.replace(partial, target)
    return root
