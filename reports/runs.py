"""Read a grid's runs back from MLflow into one tidy pandas DataFrame."""

from __future__ import annotations

import mlflow
import pandas as pd

from benchmark.errors import UserError


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
    runs = runs.rename(columns={c: c[len("tags."):] for c in runs.columns if c.startswith("tags.")})
    if "label_fraction" in runs:
        runs["label_fraction"] = pd.to_numeric(runs["label_fraction"], errors="coerce")
    return runs


def sole_grid_experiment(tracking_uri: str) -> str:
    """The name of the only ``grid-*`` experiment in the store; UserError if there are none or several."""
    mlflow.set_tracking_uri(tracking_uri)
    names = sorted(e.name for e in mlflow.search_experiments() if e.name.startswith("grid-"))
    if len(names) != 1:
        raise UserError(f"{tracking_uri} holds {len(names)} grid experiments ({', '.join(names) or 'none'}); choose one with --experiment")
    return names[0]
