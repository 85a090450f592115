"""Write a generated dataset folder once: built under a temporary name, renamed when complete.

An interrupted run never leaves a half-written dataset that a later run would take for finished;
a finished folder whose recorded settings equal the requested ones is reused as it is.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARKER = "phantom.json"


def build_once(root: Path, settings: dict[str, Any], write: Callable[[Path], None]) -> Path:
    """``write(folder)`` fills a fresh temporary folder that becomes ``root``, unless ``root`` already holds these ``settings``."""
    marker = root / MARKER
    recorded = json.dumps(settings, indent=2)
    # compared as JSON, where a tuple setting reads back as a list
    if marker.is_file() and json.loads(marker.read_text()) == json.loads(recorded):
        return root
    if root.exists():
        shutil.rmtree(root)
    partial = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write(partial)
    (partial / MARKER).write_text(recorded)
    os.replace(partial, root)
    return root
