"""Write files so that a crash never leaves a half-written one under the final name."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ssl_medbench.core.errors import StorageError

TEMPORARY_SUFFIX = ".tmp"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` on success and is removed on error.

    A full disk or a write without permission becomes a StorageError naming ``path`` (one line on the
    command line); the temporary file is removed and ``path`` keeps its previous content, if any.
    """
    # pid and a random part: two processes of the same pid on two machines may write one shared folder
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
            raise StorageError(
                f"{path}: could not write ({os.strerror(error.errno)}); nothing was left half-written"
            ) from None
        raise
    finally:
        temporary.unlink(missing_ok=True)


def remove_temporaries(path: Path) -> None:
    """Delete what killed writers of ``path`` left behind (``.<name>.<pid>-<random>.tmp``); call it when no writer can be active."""
    for temporary in path.parent.glob(f".{path.name}.*{TEMPORARY_SUFFIX}"):
        temporary.unlink(missing_ok=True)
