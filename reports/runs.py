"""Read a grid's runs back from MLflow into one tidy pandas DataFrame."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from ssl_medbench.core.errors import UserError
from ssl_medbench.core.run_tags import Artifact, Kind, Tag


def load_runs(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """One row per run: ``status``, the tags (without prefix) and ``metrics.<name>`` columns."""
    mlflow.set_tracking_uri(tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        names = [e.name for e in mlflow.search_experiments()]
        raise UserError(f"no experiment {experiment!r} in {tracking_uri} (experiments: {', '.join(names) or 'none'})")
    runs = mlflow.search_runs([found.experiment_id], output_format="pandas", max_results=100_000)
    if runs.empty:
        return runs
    runs = runs.rename(columns={c: c[len("tags.") :] for c in runs.columns if c.startswith("tags.")})
    if Tag.LABEL_FRACTION in runs:
        runs[Tag.LABEL_FRACTION] = pd.to_numeric(runs[Tag.LABEL_FRACTION], errors="coerce")
    return runs


def sole_grid_experiment(tracking_uri: str) -> str:
    """The name of the only ``grid-*`` experiment in the store; UserError if there are none or several."""
    mlflow.set_tracking_uri(tracking_uri)
    names = sorted(e.name for e in mlflow.search_experiments() if e.name.startswith("grid-"))
    if len(names) != 1:
        raise UserError(
            f"{tracking_uri} holds {len(names)} grid experiments ({', '.join(names) or 'none'}); choose one with --experiment"
        )
    return names[0]


def finetune_runs(runs: pd.DataFrame, task: str) -> pd.DataFrame:
    """The finetune runs of ``task`` with ``fraction``, ``initialisation`` (table label) and integer ``seed`` columns."""
    if runs.empty or Tag.KIND not in runs:
        return pd.DataFrame()
    cells = runs[(runs[Tag.KIND] == Kind.FINETUNE) & (runs[Tag.DOWNSTREAM_TASK] == task)].copy()
    cells["fraction"] = cells[Tag.LABEL_FRACTION]
    cells["initialisation"] = cells[Tag.INITIALISATION_LABEL]
    cells["seed"] = pd.to_numeric(cells[Tag.SEED], errors="coerce").astype("Int64")
    return cells


def download_artifact(tracking_uri: str, run_id: str, path: str, folder: Path) -> Path | None:
    """A run's artifact file downloaded into ``folder``, or None if the run has no such artifact."""
    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, dst_path=str(folder / run_id), tracking_uri=tracking_uri
            )
        )
    except (MlflowException, OSError):
        return None


def subject_scores(
    tracking_uri: str, cells: pd.DataFrame, scorer: Callable[[pd.DataFrame], pd.DataFrame], folder: Path
) -> pd.DataFrame:
    """Per-subject scores (``scorer`` applied to each FINISHED cell's ``per_subject_metrics.csv``) with the cell's fraction, initialisation and seed."""
    tables = []
    for _, cell in cells[cells["status"] == "FINISHED"].iterrows():
        path = download_artifact(tracking_uri, cell["run_id"], Artifact.PER_SUBJECT_METRICS, folder)
        if path is None:
            continue
        scores = scorer(pd.read_csv(path))
        tables.append(
            scores.assign(fraction=cell["fraction"], initialisation=cell["initialisation"], seed=cell["seed"])
        )
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
