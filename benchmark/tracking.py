"""MLflow bookkeeping: one experiment per grid, one run per job, resume by job key.

A run is FINISHED only after all its artifacts and metrics are written; a job whose FINISHED run
exists, with its artifacts intact, is skipped. A job's run is created as its claim (:mod:`benchmark.claims`), so
drivers sharing the store never run a job twice; runs of the same key left RUNNING by a dead process are marked
KILLED when the job is taken over; a FINISHED run whose artifacts were lost is tagged ``superseded`` and its job
rerun, so the store never holds two reusable FINISHED runs of one key.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ssl_medbench.core.errors import TrackingUnavailable
from ssl_medbench.core.run_tags import Artifact, Kind, Tag

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
# A remote tracking server's transient failures are retried with exponential backoff (1, 2, 4, 8, 16 s);
# set these variables to change it.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
logging.getLogger("alembic").setLevel(logging.WARNING)
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."

import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.entities import Run, RunStatus  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from benchmark.claims import BUSY, ClaimPolicy, Claims, JobTaken, finished_runs, store_lock  # noqa: E402
from benchmark.store import follow_moved_folder  # noqa: E402

#: Artifacts without which a FINISHED run of each kind is not reused (pretrain weights are also checked against their manifest).
REQUIRED_ARTIFACTS = {
    Kind.PRETRAIN: (Artifact.RESOLVED_CONFIG, Artifact.WEIGHTS),
    Kind.FINETUNE: (
        Artifact.RESOLVED_CONFIG,
        Artifact.PER_SUBJECT_METRICS,
        Artifact.LABELLED_SUBJECTS,
        Artifact.TEST_SUBJECTS,
    ),
}


def default_tracking_uri(out: Path) -> str:
    return f"sqlite:///{out.resolve() / 'mlflow.db'}"


def experiment_name(grid_name: str) -> str:
    return f"grid-{grid_name}"


def describe_error(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def store_lost(tracking_uri: str, during: str, error: BaseException) -> TrackingUnavailable:
    """The grid-ending error of a tracking store lost ``during`` something (a job, a look at one)."""
    return TrackingUnavailable(
        f"lost the MLflow tracking store {tracking_uri} during {during}: {describe_error(error)}; "
        "finished jobs are kept, run the same command again when the store is back"
    )


#: Exception type names (anywhere in the cause chain) that mean the tracking store itself failed, not the job.
_OUTAGE_TYPES = {
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "MaxRetryError",
    "NewConnectionError",
    "OperationalError",
}
_OUTAGE_TEXT = (
    "Max retries exceeded",
    "Connection refused",
    "Failed to establish a new connection",
    "database is locked",
    "unable to open database",
)


def is_tracking_outage(error: BaseException) -> bool:
    """True when ``error`` (or what caused it) is the tracking store being unreachable rather than the job failing."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if type(error).__name__ in _OUTAGE_TYPES or any(text in str(error) for text in _OUTAGE_TEXT):
            return True
        error = error.__cause__ or error.__context__
    return False


class Tracker:
    """The grid's MLflow experiment, with helpers to find, start and close job runs."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        artifact_root: Path | None = None,
        claim_policy: ClaimPolicy | None = None,
    ):
        self.tracking_uri = tracking_uri
        mlflow.set_tracking_uri(tracking_uri)
        with store_lock(tracking_uri):  # two drivers creating one store would race in its table creation
            try:
                self.client = MlflowClient(tracking_uri)
                existing = self.client.get_experiment_by_name(experiment)
            except Exception as error:
                raise TrackingUnavailable(
                    f"cannot reach the MLflow tracking store {tracking_uri}: {describe_error(error)}"
                ) from None
            if existing is None:
                self.experiment_id = self._create_experiment(experiment, artifact_root)
            else:
                self.experiment_id = existing.experiment_id
                if artifact_root is not None and (note := follow_moved_folder(tracking_uri, experiment, artifact_root)):
                    print(note, file=sys.stderr)
        self.claims = Claims(self.client, self.experiment_id, tracking_uri, claim_policy or ClaimPolicy())

    def _create_experiment(self, experiment: str, artifact_root: Path | None) -> str:
        """Create ``experiment``; if another driver created it first (a server store: no lock), use theirs."""
        location = (artifact_root / experiment).resolve().as_uri() if artifact_root is not None else None
        try:
            return self.client.create_experiment(experiment, artifact_location=location)
        except MlflowException as error:
            existing = self.client.get_experiment_by_name(experiment)
            if error.error_code != "RESOURCE_ALREADY_EXISTS" or existing is None:
                raise
            return existing.experiment_id

    def finished_run(self, key: str) -> Run | None:
        """The newest FINISHED run of ``key`` that was not superseded."""
        runs = finished_runs(self.claims.runs(key))
        return runs[0] if runs else None

    def reuse_problem(self, run: Run) -> str | None:
        """Why the FINISHED ``run`` cannot be reused (``lacks <artifact>``, or weights that do not match their
        manifest); None if it can."""
        present = {info.path for info in self.client.list_artifacts(run.info.run_id)}
        kind = run.data.tags.get(Tag.KIND, "")
        missing = [path for path in REQUIRED_ARTIFACTS.get(kind, ()) if path not in present]
        if missing:
            return f"lacks {missing[0]}"
        if kind == Kind.FINETUNE:
            return self._per_subject_problem(run.info.run_id)
        return self._weights_problem(run.info.run_id) if kind == Kind.PRETRAIN else None

    def _per_subject_problem(self, run_id: str) -> str | None:
        """What is wrong with a finetune run's per-subject table: empty, unparsable, or without ``subject_id``."""
        with tempfile.TemporaryDirectory() as scratch:
            path = self.download(run_id, Artifact.PER_SUBJECT_METRICS, Path(scratch))
            try:
                table = pd.read_csv(path)
            except ValueError as error:
                return f"has an unreadable {Artifact.PER_SUBJECT_METRICS} ({type(error).__name__})"
        if "subject_id" not in table or table.empty:
            return f"has a {Artifact.PER_SUBJECT_METRICS} without per-subject rows"
        return None

    def _weights_problem(self, run_id: str) -> str | None:
        """What is wrong with the exported weights of ``run_id``: a file missing, or not matching the manifest."""
        # imported here: the networks import torch and timm, seconds that ``status`` (which imports this module) saves
        from ssl_medbench.networks.weights import mismatched_weight_files, missing_weight_files

        with tempfile.TemporaryDirectory() as scratch:
            folder = self.download(run_id, Artifact.WEIGHTS, Path(scratch))
            try:
                if missing := missing_weight_files(folder):
                    return f"lacks {Artifact.WEIGHTS}/{missing[0]}"
                mismatched = mismatched_weight_files(folder)
            except (KeyError, TypeError, AttributeError):  # a manifest of another shape than export_weights writes
                return f"has a weights manifest that does not list its parts ({Artifact.WEIGHTS}/manifest.json)"
            if mismatched:
                return f"has weights that do not match their manifest ({', '.join(mismatched)})"
        return None

    def supersede(self, run_id: str, reason: str) -> None:
        """Mark a FINISHED run that is not reused (its job runs again), so that neither jobs nor reports count it."""
        self.client.set_tag(run_id, Tag.SUPERSEDED, reason)

    def start_plan(self, digest: str) -> None:
        """Record ``digest`` as the newest plan of the experiment; runs started from now on carry it as a tag."""
        self.client.set_experiment_tag(self.experiment_id, Tag.PLAN_DIGEST, digest)

    def current_plan(self) -> str | None:
        """The digest of the newest plan run on the experiment (None before any)."""
        return self.client.get_experiment(self.experiment_id).tags.get(Tag.PLAN_DIGEST)

    def join_plan(self, run: Run, digest: str) -> None:
        """Tag a reused run as part of plan ``digest``, so that a report on that plan counts it."""
        if run.data.tags.get(Tag.PLAN_DIGEST) != digest:
            self.client.set_tag(run.info.run_id, Tag.PLAN_DIGEST, digest)

    @contextmanager
    def job_run(self, name: str, tags: dict[str, str]) -> Iterator[JobRun]:
        """Claim the job (its run, tagged with the current plan; :class:`benchmark.claims.JobTaken` if another
        driver has it) and hold the claim while the block runs; end the run FINISHED on success, FAILED (traceback
        logged) on error, KILLED on Ctrl-C."""
        plan = self.current_plan()
        tags = tags | ({Tag.PLAN_DIGEST: plan} if plan else {})
        run_id = self.claims.claim(tags[Tag.JOB_KEY], name, tags)
        try:
            run = JobRun(mlflow.start_run(run_id=run_id).info.run_id)
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        try:
            with self.claims.heartbeat(run_id):
                yield run
            if self.claims.lost(run_id):  # cut off past the timeout, and taken over: the job is the other driver's
                raise JobTaken(BUSY, self.client.get_run(run_id))
        except KeyboardInterrupt:
            mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
            raise
        except JobTaken:
            mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
            raise
        except BaseException as error:
            try:
                run.log_files({Artifact.TRACEBACK: lambda path: path.write_text(traceback.format_exc())})
                mlflow.set_tag(Tag.ERROR, f"{type(error).__name__}: {error}"[:5000])
            finally:
                mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
            raise
        else:
            mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))

    def download(self, run_id: str, artifact_path: str, destination: Path) -> Path:
        return Path(
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=str(destination))
        )


class JobRun:
    """The one door through which a job writes to its MLflow run: tags, parameters, metrics and artifacts."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def set_tag(self, name: str, value: str) -> None:
        mlflow.set_tag(name, value)

    def log_params(self, params: dict[str, Any]) -> None:
        mlflow.log_params(params)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        mlflow.log_metrics(metrics, step=step)

    def log_files(self, writers: dict[str, Callable[[Path], object]], artifact_path: str | None = None) -> None:
        """Log one artifact per entry: ``writers[name](path)`` writes the file ``name`` in a scratch folder."""
        with tempfile.TemporaryDirectory() as folder:
            for name, write in writers.items():
                write(Path(folder) / name)
            mlflow.log_artifacts(folder, artifact_path)

    def log_folder(self, fill: Callable[[Path], object], artifact_path: str | None = None) -> None:
        """Log every file that ``fill(folder)`` writes into a scratch folder, under ``artifact_path``."""
        with tempfile.TemporaryDirectory() as folder:
            fill(Path(folder))
            mlflow.log_artifacts(folder, artifact_path)
