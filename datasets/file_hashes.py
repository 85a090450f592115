"""A per-run-folder record of dataset file hashes, keyed by size and mtime.

Hashing a real BraTS release reads every byte once; later runs only ``stat`` the files. A file
whose size or modification time changed is hashed again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ssl_medbench.core.atomic import atomic_path


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


class FileHashes:
    """JSON file mapping absolute paths to ``{size, mtime_ns, sha256}``."""

    def __init__(self, path: Path):
        self.path = path
        self._records: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}
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
