"""A real ``mlflow server`` (SQLite backend, artifacts proxied) stopped in the middle of a grid and started again: the
driver ends with the one-line error, and the same command finishes the grid with nothing lost (the finished
pretrain job is reused) and nothing duplicated (one FINISHED run per job)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from tests.test_faults import GRID, ROOT

#: Seconds a server gets to answer /health after it starts.
SERVER_START_S = 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(folder: Path, port: int) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1:port over ``folder``'s SQLite store and artifact folder, once it answers."""
    folder.mkdir(exist_ok=True)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "server.log").open("a"),
        start_new_session=True,
    )
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                return server
        except requests.ConnectionError:
            time.sleep(0.3)
    _stop(server)
    pytest.fail(f"mlflow server did not start in {SERVER_START_S} s: {(folder / 'server.log').read_text()[-2000:]}")


def _stop(server: subprocess.Popen) -> None:
    """Kill the server and its workers at once, as a crash or a lost node would."""
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)


def _runs(uri: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("grid-tiny")
    return [] if experiment is None else client.search_runs([experiment.experiment_id], max_results=1000)


@pytest.mark.slow
def test_a_real_server_stopped_mid_grid_loses_nothing_and_runs_no_job_twice(write_grid, tmp_path, capsys, monkeypatch):
    port, folder = _free_port(), tmp_path / "server"
    uri = f"http://127.0.0.1:{port}"
    quick_failure = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    grid, out = write_grid(**GRID), tmp_path / "out"
    command = ["run", "--grid", str(grid), "--out", str(out), "--no-progress", "--tracking-uri", uri]
    server = _start_server(folder, port)
    try:
        driver = subprocess.Popen(
            [sys.executable, "-m", "benchmark", *command],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **quick_failure},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and driver.poll() is None:  # the pretrain job done, a cell under way
            kinds = Counter((r.data.tags.get("kind"), r.info.status) for r in _runs(uri))
            if kinds[("pretrain", "FINISHED")] and kinds[("finetune", "RUNNING")]:
                break
            time.sleep(0.2)
        assert driver.poll() is None, "the grid ended before the server could be stopped in the middle of it"
        _stop(server)
        _, err = driver.communicate(timeout=300)
        assert driver.returncode == 2, err[-2000:]
        assert len(err.strip().splitlines()) == 1 and "lost the MLflow tracking store" in err

        server = _start_server(folder, port)
        for name, value in quick_failure.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        assert main(command) == 0
        assert "1 skipped" in capsys.readouterr().out  # the pretrain job finished before the outage: reused
        runs = _runs(uri)
        finished = Counter(r.data.tags["job_key"] for r in runs if r.info.status == "FINISHED")
        assert len(finished) == 5 and set(finished.values()) == {1}  # 1 pretrain job + 4 cells, each run once
        cut = [r for r in runs if r.info.status != "FINISHED"]
        assert len(cut) == 1 and cut[0].info.status == "KILLED"  # the cell the outage cut, closed on the rerun
        assert cut[0].data.tags["job_key"] in finished
    finally:
        if server.poll() is None:
            _stop(server)


@pytest.mark.slow
def test_two_drivers_on_a_real_server_run_every_job_once(write_grid, tmp_path):
    """No lock on a server: the claims settle (:mod:`benchmark.claims`); a claim that lost is deleted, so the active
    runs hold one FINISHED run per job."""
    port, folder = _free_port(), tmp_path / "server"
    uri = f"http://127.0.0.1:{port}"
    grid = write_grid(initialisations=["random", "autoencoder", "context_restoration"], fractions=[1.0, 0.5])
    command = ["run", "--grid", str(grid), "--out", str(tmp_path / "out"), "--no-progress", "--tracking-uri", uri]
    server = _start_server(folder, port)
    try:
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        drivers = [
            subprocess.Popen(
                [sys.executable, "-m", "benchmark", *command],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
            )
            for log in logs
        ]
        assert [driver.wait(timeout=600) for driver in drivers] == [0, 0], [log.read_text()[-3000:] for log in logs]
        runs = _runs(uri)
        assert Counter(r.info.status for r in runs) == {"FINISHED": 2 + 3 * 2}  # 2 pretrain jobs, 6 cells
        assert len({r.data.tags["job_key"] for r in runs}) == 8
    finally:
        _stop(server)
