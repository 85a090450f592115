"""Claims: a job is claimed in the tracking store before it runs, so that several drivers can share one grid.

The claim is the job's MLflow run itself, created RUNNING with the tags ``driver`` (the driver that runs it),
``claim_holder`` (``host:pid`` of the process running it) and ``heartbeat`` (Unix seconds, refreshed every quarter
of the claim timeout while the job runs). Before a driver creates it, it looks at the runs of the job's key:

- a FINISHED run (not superseded): the job is done; another driver finished it since this one planned;
- a RUNNING run of another driver whose holder is alive: the job is *busy*; the driver goes on with other jobs and
  looks again later. A holder is alive while its heartbeat is younger than the timeout (the longer of the two
  drivers'), unless it runs on this machine and its process is gone (then it is dead at once, so a grid killed and
  restarted here waits for nothing; containers that share a host name but not their process ids must be given
  host names of their own);
- a FAILED run of another driver started after this driver started: the job ran and failed there, and is not run
  twice (a driver started later retries it, as every rerun of a grid retries failed jobs);
- any other RUNNING run (its holder dead, no heartbeat at all, or this driver's own: its worker died): *stale*; it is
  closed as KILLED (tag ``interrupted``) and the job is taken over, resuming from its per-epoch checkpoint. A holder
  that was only cut off, and comes back to find its run closed, does not finish it: the job is the other driver's.

Looking and creating must be one step. On a SQLite store they are, under an exclusive lock on a file beside the
database. On any other store (an MLflow server) there is no lock to take: a driver waits :data:`SETTLE_SECONDS`
after creating its run and looks again; of two live claims the older (start time, then run id) wins and the other
deletes its run. That needs the drivers' clocks to agree within :data:`SETTLE_SECONDS` (NTP keeps them within
milliseconds).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from ssl_medbench.core.file_lock import file_lock
from ssl_medbench.core.run_tags import Tag
from ssl_medbench.core.store_uri import sqlite_path

#: Seconds without a heartbeat after which a claim is stale (``--claim-timeout``).
DEFAULT_TIMEOUT_S = 600.0
#: Seconds a driver on a store without a lock waits after claiming before it checks that its claim is the oldest.
SETTLE_SECONDS = 2.0
#: States of a job that is not this driver's to run.
BUSY, FINISHED, FAILED = "busy", "finished", "failed"


def this_process() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class ClaimPolicy:
    """Who claims (one id per driver, shared by its workers) and how long a silent claim stays alive."""

    driver: str = field(default_factory=lambda: f"{this_process()}:{secrets.token_hex(3)}")
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: When the driver started (Unix ms): another driver's failures since then are not run again.
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    @property
    def heartbeat_s(self) -> float:
        return self.timeout_s / 4

    @property
    def retry_s(self) -> float:
        """Seconds between two looks at a job another driver holds."""
        return min(5.0, self.timeout_s / 4)


class JobTaken(Exception):
    """The job is not this driver's to run: busy (another driver holds a live claim), or finished or failed there."""

    def __init__(self, state: str, run: Run):
        self.state = state
        self.run_id = run.info.run_id
        self.driver = run.data.tags.get(Tag.DRIVER, "an earlier driver")
        self.error = run.data.tags.get(Tag.ERROR, "")
        super().__init__(f"{state} in driver {self.driver} (run {self.run_id})")


def holder_alive(run: Run, policy: ClaimPolicy, now_s: float) -> bool:
    """Whether the RUNNING ``run`` is held by a live process of another driver (see the module docstring)."""
    tags = run.data.tags
    if tags.get(Tag.DRIVER) == policy.driver:
        return False  # this driver hands a job out once at a time: its own RUNNING run was left by a dead worker
    try:
        heartbeat = float(tags[Tag.HEARTBEAT])
    except (KeyError, ValueError):
        return False  # a run of a suite without claims, left RUNNING by a killed process
    host, _, pid = tags.get(Tag.CLAIM_HOLDER, "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _process_exists(int(pid)):
        return False
    try:
        timeout = max(policy.timeout_s, float(tags.get(Tag.CLAIM_TIMEOUT, 0)))
    except ValueError:
        timeout = policy.timeout_s
    return now_s - heartbeat < timeout  # the longer of the two drivers' timeouts: the holder beats by its own


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def finished_runs(runs: list[Run]) -> list[Run]:
    """The FINISHED runs that were not superseded: a job's results."""
    return [run for run in runs if run.info.status == "FINISHED" and Tag.SUPERSEDED not in run.data.tags]


def examine(runs: list[Run], policy: ClaimPolicy, now_s: float) -> tuple[JobTaken | None, list[Run]]:
    """What the runs of one job key say: why this driver must not run it (None: it may), and the stale runs to close."""
    finished = finished_runs(runs)
    if finished:
        return JobTaken(FINISHED, finished[0]), []
    running = [run for run in runs if run.info.status == "RUNNING"]
    live = [run for run in running if holder_alive(run, policy, now_s)]
    if live:
        return JobTaken(BUSY, live[0]), []
    failed_elsewhere = [
        run
        for run in runs
        if run.info.status == "FAILED"
        and run.data.tags.get(Tag.DRIVER, policy.driver) != policy.driver
        and run.info.start_time >= policy.started_ms
    ]
    if failed_elsewhere:
        return JobTaken(FAILED, failed_elsewhere[0]), []
    return None, running


def lock_file_of(tracking_uri: str) -> Path | None:
    """The claim lock file of a SQLite store (None for other stores)."""
    database = sqlite_path(tracking_uri)
    return database.with_name(database.name + ".claims.lock") if database is not None else None


def store_lock(tracking_uri: str) -> AbstractContextManager[None]:
    """The lock file of a SQLite store, held for the block (claims, and creating the store's tables); nothing to
    hold for other stores."""
    lock = lock_file_of(tracking_uri)
    return file_lock(lock) if lock is not None else nullcontext()


class Claims:
    """Claims jobs in one MLflow experiment for one driver."""

    def __init__(self, client: MlflowClient, experiment_id: str, tracking_uri: str, policy: ClaimPolicy):
        self.client = client
        self.experiment_id = experiment_id
        self.policy = policy
        #: None: a store without a file to lock (a server): claims settle instead.
        self.lock_path = lock_file_of(tracking_uri)

    def runs(self, key: str) -> list[Run]:
        query = f"tags.{Tag.JOB_KEY} = '{key}'"
        return list(self.client.search_runs([self.experiment_id], filter_string=query, max_results=1000))

    def claim(self, key: str, name: str, tags: dict[str, str]) -> str:
        """Create the job's RUNNING run as this driver's claim and return its id; JobTaken if it is not ours to run."""
        with file_lock(self.lock_path) if self.lock_path is not None else nullcontext():
            taken, stale = examine(self.runs(key), self.policy, time.time())
            if taken is not None:
                raise taken
            for run in stale:
                self.close_stale(run)
            claimed = tags | {
                Tag.DRIVER: self.policy.driver,
                Tag.CLAIM_HOLDER: this_process(),
                Tag.HEARTBEAT: f"{time.time():.3f}",
                Tag.CLAIM_TIMEOUT: f"{self.policy.timeout_s:g}",
            }
            asked = time.monotonic()
            run = self.client.create_run(self.experiment_id, run_name=name, tags=claimed)
        if self.lock_path is None:
            self._settle(key, run, time.monotonic() - asked)
        return run.info.run_id

    def _settle(self, key: str, run: Run, creation_s: float) -> None:
        """Without a lock: after SETTLE_SECONDS, keep the claim only if no other finished run or older live claim
        of ``key`` exists; else delete it and raise JobTaken. A claim that took more than half of SETTLE_SECONDS to
        create may have become visible after a younger claim's look, so it gives way (the job is tried later)."""
        run_id = run.info.run_id
        if creation_s > SETTLE_SECONDS / 2:
            self.client.delete_run(run_id)
            raise JobTaken(BUSY, run)
        time.sleep(SETTLE_SECONDS)
        now = time.time()
        others = [other for other in self.runs(key) if other.info.run_id != run_id]
        finished = finished_runs(others)
        older = [
            other
            for other in others
            if other.info.status == "RUNNING"
            and holder_alive(other, self.policy, now)
            and (other.info.start_time, other.info.run_id) < (run.info.start_time, run_id)
        ]
        if finished or older:
            self.client.delete_run(run_id)
            raise JobTaken(FINISHED, finished[0]) if finished else JobTaken(BUSY, older[0])

    def lost(self, run_id: str) -> bool:
        """Whether this driver's claim was taken over (its run closed by another driver, which found it stale)."""
        return self.client.get_run(run_id).info.status != "RUNNING"

    def close_stale(self, run: Run) -> None:
        """Close a RUNNING run whose holder is gone as KILLED (tag ``interrupted``)."""
        self.client.set_tag(run.info.run_id, Tag.INTERRUPTED, "true")
        self.client.set_terminated(run.info.run_id, "KILLED")

    def close_own(self, key: str) -> int:
        """Close this driver's runs of ``key`` still RUNNING (their worker died) as KILLED; returns how many."""
        own = [
            run
            for run in self.runs(key)
            if run.info.status == "RUNNING" and run.data.tags.get(Tag.DRIVER, self.policy.driver) == self.policy.driver
        ]
        for run in own:
            self.close_stale(run)
        return len(own)

    @contextmanager
    def heartbeat(self, run_id: str) -> Iterator[None]:
        """Refresh the claim's heartbeat every ``policy.heartbeat_s`` seconds while the block runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.policy.heartbeat_s):
                try:
                    self.client.set_tag(run_id, Tag.HEARTBEAT, f"{time.time():.3f}")
                except Exception:  # a busy or lost store: the next beat tries again; the timeout allows several misses
                    pass

        thread = threading.Thread(target=beat, name=f"heartbeat-{run_id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
