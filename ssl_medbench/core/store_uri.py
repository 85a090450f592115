"""Tracking-store URIs: which file a SQLite store lives in."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///...`` URI (SQLAlchemy's convention: ``sqlite:///relative.db``,
    ``sqlite:////absolute.db``, query ignored), or None for an in-memory database or any other kind of store."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite" or parsed.path in ("", "/:memory:"):
        return None
    return Path(parsed.path[1:])
