"""The SQLite tracking store of a run folder: checked before anything reads or writes it, repaired when the run
folder was moved.

A file at the store's path that is not a SQLite database, or a SQLite database without MLflow's tables,
is a user error in one line: MLflow would otherwise crash with a traceback, or create its tables inside
somebody else's database. An empty or missing file is fine for ``run``: MLflow creates the store.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlflow.tracking import MlflowClient

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


def _suite_location(location: str, experiment: str) -> Path | None:
    """The folder of a ``file:`` artifact location in the suite's layout (``.../mlartifacts/<experiment>``), else None."""
    parsed = urlparse(location)
    path = Path(unquote(parsed.path))
    return path if parsed.scheme == "file" and path.name == experiment and path.parent.name == "mlartifacts" else None


def follow_moved_folder(tracking_uri: str, experiment: str, artifact_root: Path) -> str | None:
    """Point ``experiment``'s artifact locations into ``artifact_root`` when its run folder was moved or copied;
    returns a one-line note, or None when nothing changed.

    MLflow records absolute artifact locations, so a moved run folder would go on writing (and reading) at the old
    path. Only a SQLite store that lives in the run folder (``mlflow.db`` beside ``artifact_root``), with the
    suite's layout, is repaired: a store shared by several run folders is left as it is."""
    database = sqlite_path(tracking_uri)
    if database is None or database.resolve().parent != artifact_root.resolve().parent:
        return None
    found = MlflowClient(tracking_uri).get_experiment_by_name(experiment)
    old = _suite_location(found.artifact_location, experiment) if found is not None else None
    new = (artifact_root / experiment).resolve()
    if old is None or old == new:
        return None
    old_uri, new_uri = found.artifact_location, new.as_uri()
    try:
        _rewrite_locations(database, found.experiment_id, old_uri, new_uri)
    except sqlite3.OperationalError as error:  # a read-only file, folder or file system
        raise UserError(
            f"{database}: the run folder was moved or copied from {old.parent.parent}, and its store cannot be "
            f"updated to follow it ({error}); copy the run folder to a place you can write and report there"
        ) from None
    return f"note: the run folder was moved or copied from {old.parent.parent} to {new.parent.parent}; experiment {experiment!r} now keeps its artifacts in {new}"


#: The columns of MLflow's SQLite schema that hold absolute artifact locations (MLflow 1.x to 3.x).
LOCATION_COLUMNS = {"experiments": "artifact_location", "runs": "artifact_uri"}


def _rewrite_locations(database: Path, experiment_id: str, old_uri: str, new_uri: str) -> None:
    """Replace the ``old_uri`` prefix by ``new_uri`` in the experiment's artifact location and its runs', in one
    transaction; UserError if MLflow's schema no longer has the columns this edits."""
    with closing(sqlite3.connect(database)) as connection, connection:
        for table, column in LOCATION_COLUMNS.items():
            if column not in {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}:
                raise UserError(
                    f"{database}: MLflow's table {table} has no column {column} in this MLflow version, so a moved "
                    "run folder cannot be followed; report from the original location"
                )
        connection.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (new_uri, experiment_id)
        )
        runs = connection.execute(
            "SELECT run_uuid, artifact_uri FROM runs WHERE experiment_id = ?", (experiment_id,)
        ).fetchall()
        moved = [(new_uri + uri[len(old_uri) :], run) for run, uri in runs if uri.startswith(old_uri + "/")]
        connection.executemany("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", moved)
