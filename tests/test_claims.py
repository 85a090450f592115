"""Claims on a real SQLite store: which runs of a key make a job done, busy or free; stale claims closed as KILLED;
the heartbeat; and two claimants racing for one job, with the file lock and with the lock-free settle protocol."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

import benchmark.claims as claims_module
from benchmark.claims import BUSY, FAILED, FINISHED, ClaimPolicy, Claims, JobTaken, this_process
from benchmark.tracking import Tracker
from ssl_medbench.core.run_tags import Tag

KEY = "k" * 24


@pytest.fixture
def store(tmp_path: Path) -> tuple[MlflowClient, str, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    return client, client.create_experiment("grid-claims", artifact_location=(tmp_path / "a").as_uri()), uri


def _run(client: MlflowClient, experiment: str, status: str, **tags: str) -> str:
    """A run of KEY with ``status`` and ``tags`` (names of :class:`Tag` attributes, lower case)."""
    run = client.create_run(experiment, tags={Tag.JOB_KEY: KEY} | tags)
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def _claim(claims: Claims) -> str | JobTaken:
    try:
        return claims.claim(KEY, "pretrain/x/seed0", {Tag.JOB_KEY: KEY})
    except JobTaken as taken:
        return taken


def _other_driver_tags(heartbeat_age_s: float, holder: str = "another-node:4242") -> dict[str, str]:
    return {
        Tag.DRIVER: "another-node:4242:abcdef",
        Tag.CLAIM_HOLDER: holder,
        Tag.HEARTBEAT: f"{time.time() - heartbeat_age_s:.3f}",
    }


def test_a_finished_run_makes_the_job_done_and_a_superseded_one_does_not(store):
    client, experiment, uri = store
    claims = Claims(client, experiment, uri, ClaimPolicy())
    superseded = _run(client, experiment, "FINISHED", **{Tag.SUPERSEDED: "lacks weights"})
    first = _claim(claims)
    assert isinstance(first, str) and first != superseded  # the superseded run is no result: the job runs
    client.set_terminated(first, "FINISHED")
    taken = _claim(claims)
    assert isinstance(taken, JobTaken) and taken.state == FINISHED and taken.run_id == first


def test_a_live_claim_of_another_driver_is_busy_and_left_running(store):
    client, experiment, uri = store
    held = _run(client, experiment, "RUNNING", **_other_driver_tags(heartbeat_age_s=5))
    taken = _claim(Claims(client, experiment, uri, ClaimPolicy(timeout_s=60)))
    assert isinstance(taken, JobTaken) and taken.state == BUSY and taken.run_id == held
    assert client.get_run(held).info.status == "RUNNING"
    assert len(client.search_runs([experiment], run_view_type=ViewType.ALL)) == 1  # no run of ours was created


@pytest.mark.parametrize(
    "tags",
    [
        pytest.param(_other_driver_tags(heartbeat_age_s=61), id="heartbeat-older-than-the-timeout"),
        pytest.param({}, id="no-heartbeat-a-suite-without-claims"),
        pytest.param("dead-local-process", id="holder-on-this-machine-is-gone"),
        pytest.param("own-driver", id="this-drivers-own-dead-worker"),
    ],
)
def test_a_stale_claim_is_closed_as_killed_and_taken_over(store, tags):
    client, experiment, uri = store
    policy = ClaimPolicy(timeout_s=60)
    if tags == "dead-local-process":
        finished = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        )
        tags = _other_driver_tags(
            heartbeat_age_s=1, holder=f"{this_process().rpartition(':')[0]}:{finished.stdout.strip()}"
        )
    elif tags == "own-driver":
        tags = _other_driver_tags(heartbeat_age_s=1) | {Tag.DRIVER: policy.driver}
    stale = _run(client, experiment, "RUNNING", **tags)
    claimed = _claim(Claims(client, experiment, uri, policy))
    assert isinstance(claimed, str)
    closed = client.get_run(stale)
    assert closed.info.status == "KILLED" and closed.data.tags[Tag.INTERRUPTED] == "true"
    mine = client.get_run(claimed)
    assert mine.info.status == "RUNNING" and mine.data.tags[Tag.DRIVER] == policy.driver
    assert mine.data.tags[Tag.CLAIM_HOLDER] == this_process()


def test_a_failure_in_another_driver_is_not_run_again_unless_it_came_before_this_driver_started(store):
    client, experiment, uri = store
    before = ClaimPolicy()
    time.sleep(0.01)
    failed = _run(client, experiment, "FAILED", **_other_driver_tags(0) | {Tag.ERROR: "ValueError: bad batch"})
    taken = _claim(Claims(client, experiment, uri, before))
    assert isinstance(taken, JobTaken) and taken.state == FAILED and taken.run_id == failed
    assert taken.error == "ValueError: bad batch"
    assert isinstance(_claim(Claims(client, experiment, uri, ClaimPolicy())), str)  # a later driver retries it


def test_the_heartbeat_is_refreshed_while_the_job_runs(store, monkeypatch):
    client, experiment, uri = store
    beats: list[float] = []
    set_tag = MlflowClient.set_tag

    def recording_set_tag(self, run_id, key, value, *args, **kwargs):
        if key == Tag.HEARTBEAT:
            beats.append(float(value))
        return set_tag(self, run_id, key, value, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "set_tag", recording_set_tag)
    tracker = Tracker(uri, "grid-claims", claim_policy=ClaimPolicy(timeout_s=4.0))
    with tracker.job_run("pretrain/x/seed0", {Tag.JOB_KEY: KEY}) as run:
        deadline = time.monotonic() + 60
        while len(beats) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    intervals = [later - earlier for earlier, later in zip(beats, beats[1:])]
    assert len(intervals) >= 2
    # a beat every timeout / 4 = 1 s (plus the store's latency), never sooner, and well under one per timeout
    assert all(0.95 <= interval < 2.0 for interval in intervals), intervals
    ended = client.get_run(run.run_id)
    assert ended.info.status == "FINISHED" and float(ended.data.tags[Tag.HEARTBEAT]) in beats


def test_a_job_another_driver_holds_raises_job_taken_before_any_run_starts(store):
    client, experiment, uri = store
    _run(client, experiment, "RUNNING", **_other_driver_tags(heartbeat_age_s=1))
    tracker = Tracker(uri, "grid-claims", claim_policy=ClaimPolicy(timeout_s=60))
    with pytest.raises(JobTaken, match="busy in driver another-node:4242:abcdef"):
        with tracker.job_run("pretrain/x/seed0", {Tag.JOB_KEY: KEY}):
            pytest.fail("the body of a job another driver holds ran")


def _race(claimants: list[Claims]) -> list[str | JobTaken]:
    """Every claimant claims KEY at once, each in its own thread."""
    barrier = threading.Barrier(len(claimants))
    results: list[str | JobTaken] = [""] * len(claimants)

    def claim(index: int) -> None:
        barrier.wait()
        results[index] = _claim(claimants[index])

    threads = [threading.Thread(target=claim, args=(index,)) for index in range(len(claimants))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("locked", [True, False], ids=["sqlite-file-lock", "lock-free-settle"])
def test_of_claimants_racing_for_one_job_exactly_one_wins(store, monkeypatch, locked):
    client, experiment, uri = store
    monkeypatch.setattr(claims_module, "SETTLE_SECONDS", 0.5)
    claimants = [Claims(MlflowClient(uri), experiment, uri, ClaimPolicy()) for _ in range(4)]
    if not locked:
        for claimant in claimants:
            claimant.lock_path = None  # as on an MLflow server: no file to lock
    results = _race(claimants)
    winners = [result for result in results if isinstance(result, str)]
    assert len(winners) == 1, results
    assert all(isinstance(result, JobTaken) and result.state == BUSY for result in results if result not in winners)
    live = client.search_runs([experiment])
    assert [run.info.run_id for run in live] == winners  # the losers of the settle deleted their runs
    if locked:  # the lock lets one claimant look and create at a time: the others saw its claim and created none
        assert len(client.search_runs([experiment], run_view_type=ViewType.ALL)) == 1


def test_a_holder_with_a_longer_timeout_is_judged_by_its_own(store):
    client, experiment, uri = store
    held = _run(client, experiment, "RUNNING", **_other_driver_tags(heartbeat_age_s=100) | {Tag.CLAIM_TIMEOUT: "3600"})
    taken = _claim(Claims(client, experiment, uri, ClaimPolicy(timeout_s=60)))  # it beats every 900 s, not 15
    assert isinstance(taken, JobTaken) and taken.state == BUSY and taken.run_id == held


@pytest.mark.parametrize("closed_as", ["KILLED", "FAILED"])
def test_a_holder_whose_claim_was_taken_over_while_it_ran_does_not_finish_the_run(store, closed_as):
    client, experiment, uri = store
    tracker = Tracker(uri, "grid-claims", claim_policy=ClaimPolicy(timeout_s=60))
    with pytest.raises(JobTaken, match="busy"):
        with tracker.job_run("pretrain/x/seed0", {Tag.JOB_KEY: KEY}) as run:
            client.set_terminated(run.run_id, closed_as)  # another driver closed it meanwhile
    assert client.get_run(run.run_id).info.status == "KILLED"


def test_on_a_store_without_a_lock_a_claim_slow_to_create_gives_way(store, monkeypatch):
    client, experiment, uri = store
    monkeypatch.setattr(claims_module, "SETTLE_SECONDS", 0.2)
    slow = MlflowClient(uri)
    create = slow.create_run
    monkeypatch.setattr(slow, "create_run", lambda *args, **kwargs: time.sleep(0.15) or create(*args, **kwargs))
    claims = Claims(slow, experiment, uri, ClaimPolicy())
    claims.lock_path = None
    taken = _claim(claims)
    assert isinstance(taken, JobTaken) and taken.state == BUSY
    assert client.search_runs([experiment]) == []  # its run was deleted: another driver's may have looked first


def test_a_set_aside_job_is_looked_at_in_the_store_before_it_is_handed_out_again(store, monkeypatch):
    """The driver sets a pretrain job another driver holds aside; while it is held, ``due`` hands nothing out; once
    the other driver finished it, ``due`` counts it as finished there and hands out the cell waiting for it."""
    from benchmark.executors.dispatch import Dispatch
    from benchmark.planner import FinetuneCell, Plan, PretrainJob
    from benchmark.worker import JobOutcome
    from ssl_medbench.datasets.splits import LabelBudget
    from ssl_medbench.datasets.views import AxialPatches

    client, experiment, uri = store
    tracker = Tracker(uri, "grid-claims", claim_policy=ClaimPolicy(timeout_s=60))
    pretrain = PretrainJob(KEY, "autoencoder", "phantom", 0, AxialPatches(side=32))
    cell = FinetuneCell("c" * 24, "autoencoder", "seg", "phantom", LabelBudget(fraction=1.0), 0, KEY)
    held = _run(client, experiment, "RUNNING", **_other_driver_tags(heartbeat_age_s=1))
    with Dispatch(Plan((pretrain,), (cell,)), tracker, "claims") as dispatch:
        assert dispatch.first_wave() == [(pretrain, None)]
        assert dispatch.record(JobOutcome(pretrain.name, KEY, BUSY)) == [] and dispatch.remaining == 2
        monkeypatch.setattr(time, "monotonic", lambda: 1e12)  # every set-aside job is due
        assert dispatch.due() == [] and len(dispatch.deferred) == 1  # still held: set aside again, no worker used
        client.set_terminated(held, "FINISHED")
        dispatch.deferred = [(0.0, pretrain)]
        assert dispatch.due() == [(cell, held)]
    assert dispatch.summary.elsewhere == [pretrain.name] and dispatch.remaining == 1


@pytest.mark.parametrize("rival_is_older", [True, False])
def test_the_settle_keeps_the_oldest_live_claim(store, monkeypatch, rival_is_older):
    client, experiment, uri = store
    monkeypatch.setattr(claims_module, "SETTLE_SECONDS", 0.05)
    claims = Claims(client, experiment, uri, ClaimPolicy())
    now = int(time.time() * 1000)
    ours = client.create_run(experiment, start_time=now, tags={Tag.JOB_KEY: KEY})
    rival_tags = {Tag.JOB_KEY: KEY} | _other_driver_tags(heartbeat_age_s=0)
    client.create_run(experiment, start_time=now + (-1000 if rival_is_older else 1000), tags=rival_tags)
    if rival_is_older:
        with pytest.raises(JobTaken, match="busy"):
            claims._settle(KEY, ours, creation_s=0.0)
        assert client.get_run(ours.info.run_id).info.lifecycle_stage == "deleted"
    else:
        claims._settle(KEY, ours, creation_s=0.0)
        assert client.get_run(ours.info.run_id).info.lifecycle_stage == "active"


def test_closing_this_drivers_runs_leaves_other_drivers_runs_running(store):
    client, experiment, uri = store
    policy = ClaimPolicy()
    ours = _run(client, experiment, "RUNNING", **{Tag.DRIVER: policy.driver})
    theirs = _run(client, experiment, "RUNNING", **_other_driver_tags(heartbeat_age_s=0))
    assert Claims(client, experiment, uri, policy).close_own(KEY) == 1
    assert client.get_run(ours).info.status == "KILLED" and client.get_run(theirs).info.status == "RUNNING"


def test_a_job_this_driver_itself_finished_counts_as_its_own_and_a_failure_elsewhere_as_failed(store):
    from benchmark.planner import PretrainJob
    from benchmark.worker import taken_outcome
    from ssl_medbench.datasets.views import AxialPatches

    client, experiment, uri = store
    policy, job = ClaimPolicy(), PretrainJob(KEY, "autoencoder", "phantom", 0, AxialPatches(side=32))
    own = _run(client, experiment, "FINISHED", **{Tag.DRIVER: policy.driver})
    outcome = taken_outcome(job, JobTaken(FINISHED, client.get_run(own)), policy.driver)
    assert (outcome.status, outcome.run_id, outcome.by) == ("finished", own, "")
    failed = _run(client, experiment, "FAILED", **_other_driver_tags(0) | {Tag.ERROR: "ValueError: bad batch"})
    outcome = taken_outcome(job, JobTaken(FAILED, client.get_run(failed)), policy.driver)
    assert (outcome.status, outcome.by) == ("failed", "another-node:4242:abcdef")
    assert outcome.message == "failed in driver another-node:4242:abcdef: ValueError: bad batch"


def test_looking_at_a_set_aside_job_raises_what_the_store_raised_and_an_outage_in_one_line(store, monkeypatch):
    from mlflow.exceptions import MlflowException

    from benchmark.executors.dispatch import Dispatch
    from benchmark.planner import Plan, PretrainJob
    from ssl_medbench.core.errors import TrackingUnavailable
    from ssl_medbench.datasets.views import AxialPatches

    client, experiment, uri = store
    tracker = Tracker(uri, "grid-claims", claim_policy=ClaimPolicy(timeout_s=60))
    job = PretrainJob(KEY, "autoencoder", "phantom", 0, AxialPatches(side=32))
    with Dispatch(Plan((job,), ()), tracker, "claims") as dispatch:
        for error, expected in [
            (ValueError("a bug"), ValueError),
            (MlflowException("Connection refused"), TrackingUnavailable),
        ]:

            def broken(key: str, error: Exception = error) -> list:
                raise error

            monkeypatch.setattr(dispatch.claims, "runs", broken)
            dispatch.deferred = [(0.0, job)]
            with pytest.raises(expected):
                dispatch.due()


def test_a_set_aside_job_that_failed_in_another_driver_is_counted_failed_and_its_cells_go_on(store):
    from benchmark.executors.dispatch import Dispatch
    from benchmark.planner import FinetuneCell, Plan, PretrainJob
    from ssl_medbench.datasets.splits import LabelBudget
    from ssl_medbench.datasets.views import AxialPatches

    client, experiment, uri = store
    tracker = Tracker(uri, "grid-claims", claim_policy=ClaimPolicy(timeout_s=60))
    pretrain = PretrainJob(KEY, "autoencoder", "phantom", 0, AxialPatches(side=32))
    cell = FinetuneCell("c" * 24, "autoencoder", "seg", "phantom", LabelBudget(fraction=1.0), 0, KEY)
    with Dispatch(Plan((pretrain,), (cell,)), tracker, "claims") as dispatch:
        _run(client, experiment, "FAILED", **_other_driver_tags(0) | {Tag.ERROR: "ValueError: bad batch"})
        dispatch.deferred = [(0.0, pretrain)]
        assert dispatch.due() == [(cell, None)]  # the cell runs, and fails saying its pretrain job did not finish
    assert dispatch.summary.failed == [
        (pretrain.name, "failed in driver another-node:4242:abcdef: ValueError: bad batch")
    ]
