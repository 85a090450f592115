"""Two ``run`` processes on one grid and one SQLite store: every job runs exactly once, also when both start before
the phantoms exist; and a driver SIGKILLed while it holds a claim is taken over by the other after the timeout."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from benchmark.claims import store_lock
from ssl_medbench.core.run_tags import Tag
from tests.conftest import tiny_grid
from tests.test_faults import ROOT

#: Seconds one driver may take on the tiny grids.
DRIVER_LIMIT_S = 600
#: The claim timeout of the takeover test (the command line's smallest).
TIMEOUT_S = 10
SUMMARY = re.compile(
    r"(\d+) jobs finished, (\d+) skipped \(finished earlier\), (?:(\d+) finished by another driver, )?"
)


def _grid_without_data(tmp_path: Path, **changes) -> Path:
    """A tiny grid whose phantoms each driver generates into the run folder (no ``root``): both start before they exist."""
    grid = tiny_grid(tmp_path, **changes)
    grid["datasets"]["phantom"].pop("root")
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def _driver(grid: Path, out: Path, log: Path, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "benchmark",
        "run",
        "--grid",
        str(grid),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, env=environment)


def _all_runs(out: Path):
    """The store's client and every run of the grid; opened under the suite's store lock, as `status` opens it: a
    client touching a store that a driver is creating would run MLflow's schema migration a second time, at once."""
    uri = f"sqlite:///{out / 'mlflow.db'}"
    with store_lock(uri):
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("grid-tiny")
        return client, client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000)


@pytest.mark.slow
def test_two_drivers_started_together_run_every_job_exactly_once(tmp_path):
    grid = _grid_without_data(
        tmp_path,
        initialisations=["random", "autoencoder", "context_restoration", "rotation"],
        pretrain={"epochs": 2, "steps_per_epoch": 20, "batch_size": 4},
    )
    out = tmp_path / "out"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    drivers = [_driver(grid, out, log) for log in logs]
    codes = [driver.wait(timeout=DRIVER_LIMIT_S) for driver in drivers]
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], texts

    _, runs = _all_runs(out)
    created = Counter(run.data.tags[Tag.JOB_KEY] for run in runs)
    jobs = 3 + 4 * 2  # three pretext tasks; cells: four initialisations x two fractions x one seed
    assert len(created) == jobs
    assert set(created.values()) == {1}, created  # one run created per job: none started twice, none deleted
    assert {run.info.status for run in runs} == {"FINISHED"}
    summaries = [SUMMARY.search(text) for text in texts]
    assert all(summaries), texts
    ran = [int(summary.group(1)) for summary in summaries]
    assert sum(ran) == jobs  # each job finished by exactly one driver
    print(f"jobs run by the two drivers: {ran}; their summaries: {[s.group(0) for s in summaries]}")


def _wait_for_a_claim(out: Path, driver: subprocess.Popen, log: Path) -> str:
    """The run id of the first RUNNING pretrain run ``driver`` claims."""
    deadline = time.monotonic() + DRIVER_LIMIT_S
    while time.monotonic() < deadline:
        assert driver.poll() is None, log.read_text()
        if (out / "mlflow.db").exists():
            try:
                _, runs = _all_runs(out)
            except Exception:  # the store is being created
                runs = []
            held = [r for r in runs if r.info.status == "RUNNING" and r.data.tags.get(Tag.KIND) == "pretrain"]
            if held and Tag.HEARTBEAT in held[0].data.tags:
                return held[0].info.run_id
        time.sleep(0.2)
    pytest.fail("the first driver claimed no pretrain job")


@pytest.mark.slow
def test_a_claim_of_a_driver_killed_on_another_machine_is_taken_over_after_the_timeout(tmp_path):
    grid = _grid_without_data(
        tmp_path,
        fractions=[1.0],
        pretrain={"epochs": 2, "steps_per_epoch": 400, "batch_size": 4},
    )
    out = tmp_path / "out"
    first_log, second_log = tmp_path / "a.log", tmp_path / "b.log"
    first = _driver(grid, out, first_log, "--claim-timeout", str(TIMEOUT_S))
    held = _wait_for_a_claim(out, first, first_log)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    client, _ = _all_runs(out)
    client.set_tag(held, Tag.CLAIM_HOLDER, "another-node:4242")  # as if it ran there: its death is not visible here
    last_beat = float(client.get_run(held).data.tags[Tag.HEARTBEAT])

    second = _driver(grid, out, second_log, "--claim-timeout", str(TIMEOUT_S))
    assert second.wait(timeout=DRIVER_LIMIT_S) == 0, second_log.read_text()

    _, runs = _all_runs(out)
    killed = client.get_run(held)
    assert killed.info.status == "KILLED" and killed.data.tags[Tag.INTERRUPTED] == "true"
    takeover = [r for r in runs if r.data.tags[Tag.JOB_KEY] == killed.data.tags[Tag.JOB_KEY] and r.info.run_id != held]
    assert [r.info.status for r in takeover] == ["FINISHED"]
    assert takeover[0].info.start_time / 1000 >= last_beat + TIMEOUT_S  # not before the claim went stale
    statuses = Counter((r.data.tags[Tag.JOB_KEY], r.info.status) for r in runs)
    finished = [key for (key, status), count in statuses.items() if status == "FINISHED" and count == 1]
    assert len(finished) == 1 + 2 and not [k for (k, s), n in statuses.items() if s == "FINISHED" and n > 1]
