"""An exclusive lock on a file, held across processes and across machines that share the file system.

It takes a POSIX record lock (``fcntl.lockf``), the lock SQLite itself relies on: wherever a SQLite store works,
this lock does too. Record locks do not exclude the threads of one process from each other, so a per-path thread
lock is taken first. POSIX only (Linux, macOS).
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_THREAD_LOCKS: dict[str, threading.Lock] = {}


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock on ``path`` (created if missing) for the block; waits while another holder has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    in_process = _THREAD_LOCKS.setdefault(str(path.absolute()), threading.Lock())
    with in_process, open(path, "a") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)
