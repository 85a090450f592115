"""Check a SQLite tracking store before anything reads or writes it.

A file at the store's path that is not a SQLite database, or a SQLite database without MLflow's tables,
is a user error in one line: MLflow would otherwise crash with a traceback, or create its tables inside
somebody else's database. An empty or missing file is fine: MLflow creates the store.
"""

from __future__ import annotations

import sqlite3

from ssl_medbench.core.errors import UserError
from ssl_medbench.core.store_uri import sqlite_path

SQLITE_HEADER = b"SQLite format 3\x00"


def check_store(tracking_uri: str) -> None:
    """UserError naming the file when the URI's SQLite file exists but is not an MLflow store."""
    path = sqlite_path(tracking_uri)
    if path is None or not path.exists():
        return
    if not path.is_file():
        raise UserError(f"{path}: not a file, so not an MLflow SQLite store; choose another --out or --tracking-uri")
    if path.stat().st_size == 0:
        return
    with path.open("rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise UserError(
                f"{path}: not a SQLite database, so not an MLflow store; move it away or choose another --out"
            )
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        raise UserError(
            f"{path}: cannot be read as a SQLite database ({error}); move it away or choose another --out"
        ) from None
    if tables and "experiments" not in tables:
        shown = ", ".join(sorted(tables)[:5])
        raise UserError(
            f"{path}: a SQLite database without MLflow's tables ({shown}); move it away or choose another --out"
        )
