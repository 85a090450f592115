"""Progress bars: live on a terminal, sparse (every 10 s) in a log file, none with ``--no-progress``."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

_enabled = True


def enable_progress(enabled: bool) -> None:
    """Switch every progress bar of the suite on or off (the CLI's ``--no-progress``)."""
    global _enabled
    _enabled = enabled


def progress_bar(**kwargs: Any) -> tqdm:
    """A tqdm bar; use it as a context manager so that an error closes it before the message is printed."""
    kwargs.setdefault("mininterval", 0.1 if sys.stderr.isatty() else 10.0)
    kwargs["disable"] = not _enabled
    return tqdm(**kwargs)
