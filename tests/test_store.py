"""A tracking store that is not one is refused in one line before MLflow touches it."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from benchmark.store import check_store, follow_moved_folder
from ssl_medbench.core.errors import UserError
from ssl_medbench.core.store_uri import sqlite_path


def test_only_sqlite_uris_name_a_file(tmp_path):
    assert sqlite_path(f"sqlite:///{tmp_path}/mlflow.db") == tmp_path / "mlflow.db"
    assert sqlite_path("http://127.0.0.1:5000") is None
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("sqlite:///results/mlflow.db") == Path("results/mlflow.db")
    assert sqlite_path(f"sqlite:///{tmp_path}/mlflow.db?timeout=30") == tmp_path / "mlflow.db"


def test_missing_empty_and_real_stores_pass(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    check_store(uri)
    (tmp_path / "mlflow.db").write_bytes(b"")
    check_store(uri)
    MlflowClient(uri).create_experiment("grid-x")
    check_store(uri)


#: case (as docs/bad_input.md names it) -> (how to make the file, the message)
CATALOGUE = {
    "store file that is not SQLite": (lambda path: path.write_text("garbage, not sqlite"), "not a SQLite database"),
    "store path that is a folder": (lambda path: path.mkdir(), "not a file"),
    "corrupt SQLite file": (
        lambda path: path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200),
        "cannot be read as a SQLite database",
    ),
    "SQLite database of another program": (
        lambda path: sqlite3.connect(path).execute("CREATE TABLE patients (id INTEGER)").connection.commit(),
        "without MLflow's tables (patients)",
    ),
}


@pytest.mark.parametrize(("make", "message"), CATALOGUE.values(), ids=list(CATALOGUE))
def test_a_file_that_is_not_an_mlflow_store_is_refused_and_left_alone(tmp_path, make, message):
    path = tmp_path / "mlflow.db"
    make(path)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(UserError, match=re.escape(message)) as caught:
        check_store(f"sqlite:///{path}")
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert (path.read_bytes() if path.is_file() else None) == before


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "report"])
def test_the_command_line_refuses_a_store_that_is_not_one_before_preparing_anything(
    command, write_grid, tmp_path, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mlflow.db").write_text("garbage, not sqlite")
    run = ["run", "--grid", str(write_grid()), "--no-progress"]
    assert main([*(run if command == "run" else ["report"]), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"error: {out / 'mlflow.db'}: not a SQLite database, so not an MLflow store; move it away or choose another --out"
    )
    assert sorted(path.name for path in out.iterdir()) == ["mlflow.db"]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["report", "status"])
def test_report_and_status_on_an_unreachable_server_are_one_line(command, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert main([command, "--tracking-uri", "http://127.0.0.1:9", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(
        "error: cannot reach the MLflow tracking store http://127.0.0.1:9"
    )


@pytest.mark.parametrize("command", ["run", "report", "status"])
def test_an_empty_out_folder_is_refused_not_taken_for_the_current_one(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([command, "--out", ""]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: argument --out: must not be empty (an unset variable?); give a folder, e.g. results"
    )
    assert list(tmp_path.iterdir()) == []


def _moved_store(out: Path) -> str:
    """A store in ``out`` whose experiment ``grid-x`` records its artifacts under another run folder, as after a move."""
    out.mkdir()
    uri = f"sqlite:///{out / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment(
        "grid-x", artifact_location=(out.parent / "old" / "mlartifacts" / "grid-x").as_uri()
    )
    client.create_run(experiment)
    return uri


def test_report_on_an_empty_store_file_is_refused_and_the_file_left_alone(tmp_path, capsys):
    (tmp_path / "mlflow.db").write_bytes(b"")
    assert main(["report", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path}: an empty mlflow.db here; run a grid first or pass --tracking-uri"
    )
    assert (tmp_path / "mlflow.db").read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


def test_a_moved_run_folder_whose_store_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "copy"
    uri = _moved_store(out)
    before = (out / "mlflow.db").read_bytes()
    connect = sqlite3.connect  # the same module object everywhere: open every plain connection read-only
    monkeypatch.setattr(
        sqlite3,
        "connect",
        lambda path, **kwargs: (
            connect(path, **kwargs) if kwargs else connect(f"{Path(path).as_uri()}?mode=ro", uri=True)
        ),
    )
    assert main(["report", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {out / 'mlflow.db'}: the run folder was moved or copied from {tmp_path / 'old'}")
    assert "readonly database" in err and len(err.splitlines()) == 1
    assert (out / "mlflow.db").read_bytes() == before and not (out / "report").exists()
    assert MlflowClient(uri).get_experiment_by_name("grid-x").artifact_location.endswith("/old/mlartifacts/grid-x")


def test_a_store_without_the_location_columns_is_not_edited(tmp_path):
    out = tmp_path / "copy"
    uri = _moved_store(out)
    with sqlite3.connect(out / "mlflow.db") as connection:
        connection.execute("ALTER TABLE runs RENAME COLUMN artifact_uri TO artifact_location_v9")
    with pytest.raises(UserError, match="MLflow's table runs has no column artifact_uri"):
        follow_moved_folder(uri, "grid-x", out / "mlartifacts")
    assert MlflowClient(uri).get_experiment_by_name("grid-x").artifact_location.endswith("/old/mlartifacts/grid-x")
