"""A per-run-folder record of dataset file hashes, keyed by size and mtime, and the duplicate-subject check built
on those digests.

Hashing a real BraTS release reads every byte once; later runs only ``stat`` the files. A file
whose size or modification time changed is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from ssl_medbench.core.atomic import atomic_path
from ssl_medbench.core.errors import DataError


def file_sha256(path: Path, chunk_size: int = 1 << 16) -> str:
    """SHA-256 of a file, read into one small reused buffer: hashing a whole cache allocates nothing per chunk, so
    it leaves no freed chunks behind to fragment the heap of a long-running job."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while size := handle.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def _read_records(path: Path) -> dict[str, dict]:
    """The recorded hashes; an unreadable record file (truncated, edited) is started afresh, with a note."""
    if not path.is_file():
        return {}
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        records = None
    if isinstance(records, dict) and all(isinstance(record, dict) for record in records.values()):
        return records
    print(f"note: {path}: unreadable; every file is hashed again", file=sys.stderr)
    return {}


class FileHashes:
    """JSON file mapping absolute paths to ``{size, mtime_ns, sha256}``."""

    def __init__(self, path: Path):
        self.path = path
        self._records: dict[str, dict] = _read_records(path)
        self._dirty = False

    def sha256(self, file: Path) -> str:
        """The file's SHA-256, recomputed only when its size or modification time changed."""
        stat = file.stat()
        key = str(file.resolve())
        record = self._records.get(key)
        if record and record["size"] == stat.st_size and record["mtime_ns"] == stat.st_mtime_ns:
            return record["sha256"]
        self._records[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file_sha256(file)}
        self._dirty = True
        return self._records[key]["sha256"]

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as temporary:
            temporary.write_text(json.dumps(self._records, indent=1, sort_keys=True))
        self._dirty = False


class DuplicateGuard:
    """Refuses duplicate subjects: one folder or file reached from two subjects (a symlink, or one path listed
    twice) and two subjects holding an image of identical content (a copy)."""

    def __init__(self, root: Path):
        self.root = root
        self._paths: dict[Path, tuple[str, Path]] = {}
        self._images: dict[str, tuple[str, Path]] = {}

    def add(self, subject: str, path: Path, digest: str | None = None) -> None:
        """Record ``path`` as part of ``subject``; give ``digest`` for an image, whose content must be its own."""
        real = path.resolve()
        if real in self._paths:
            other, first = self._paths[real]
            kind = "folder" if real.is_dir() else "file"
            raise DataError(f"{self.root}: {_who(other, subject)}: {first} and {path} lead to the same {kind}")
        self._paths[real] = (subject, path)
        if digest is None:
            return
        other, first = self._images.setdefault(digest, (subject, path))
        if other != subject:
            raise DataError(f"{self.root}: {_who(other, subject)}: {first} and {path} have identical content")


def _who(first: str, second: str) -> str:
    if first == second:
        return f"subject '{first}' uses one file twice"
    return f"subjects '{first}' and '{second}' are duplicates"
