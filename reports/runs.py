"""Read a grid's runs back from MLflow into one tidy pandas DataFrame, and choose the runs a report counts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ssl_medbench.core.errors import UserError
from ssl_medbench.core.run_tags import Kind, Param, Protocol, Tag
from ssl_medbench.datasets.splits import LabelBudget


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
        # always float: a grid of fraction 1 alone writes the tag "1", which would read back as an integer column
        runs[Tag.LABEL_FRACTION] = pd.to_numeric(runs[Tag.LABEL_FRACTION], errors="coerce").astype(float)
    return runs


def current_plan(tracking_uri: str, experiment: str) -> str | None:
    """The digest of the newest grid plan run on ``experiment`` (None for a store written before plans were recorded)."""
    found = MlflowClient(tracking_uri).get_experiment_by_name(experiment)
    return found.tags.get(Tag.PLAN_DIGEST) if found is not None else None


def _run_names(runs: pd.DataFrame) -> pd.Series:
    return runs["mlflow.runName"].fillna(runs["run_id"]) if "mlflow.runName" in runs else runs["run_id"]


def _other_plan_reasons(runs: pd.DataFrame, keys: pd.Series, plan: str) -> pd.Series:
    """Why each run whose job key is not in ``plan`` is set apart (empty for the runs of ``plan``'s jobs)."""
    digests = runs[Tag.PLAN_DIGEST] if Tag.PLAN_DIGEST in runs else pd.Series(None, index=runs.index, dtype=object)
    in_plan = keys.isin(set(keys[digests == plan]))
    recorded = digests.fillna("not recorded")
    return recorded.map(lambda d: f"other grid settings: plan {d}, not the newest plan {plan}").where(~in_plan, "")


def select_runs(runs: pd.DataFrame, plan: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(counted, set apart): one run per job key of ``plan`` (the newest FINISHED, else the newest), without
    superseded runs; the others with a ``reason`` column. Without a plan every job key counts; a run without a
    job key is its own job."""
    if runs.empty:
        return runs, runs.assign(reason=pd.Series(dtype=str))
    keys = runs[Tag.JOB_KEY].fillna(runs["run_id"]) if Tag.JOB_KEY in runs else runs["run_id"]
    reasons = _other_plan_reasons(runs, keys, plan) if plan else pd.Series("", index=runs.index)
    if Tag.SUPERSEDED in runs:
        superseded = runs[Tag.SUPERSEDED].notna() & (reasons == "")
        reasons[superseded] = "superseded (its job ran again): " + runs.loc[superseded, Tag.SUPERSEDED]
    candidates = runs[reasons == ""].assign(_key=keys, _unfinished=runs["status"] != "FINISHED")
    ranked = candidates.sort_values(["_unfinished", "start_time"], ascending=[True, False])
    chosen = ranked.drop_duplicates("_key")
    counted_by_key = chosen.set_index("_key")["run_id"]
    earlier = candidates.index.difference(chosen.index)
    reasons[earlier] = [f"another run of the same job is counted ({counted_by_key[keys[i]]})" for i in earlier]
    counted = runs.loc[chosen.index.sort_values()]
    return counted, runs[reasons != ""].assign(reason=reasons[reasons != ""])


def set_apart_table(apart: pd.DataFrame) -> pd.DataFrame:
    """The runs a report does not count: name, run id, status and why."""
    return pd.DataFrame(
        {
            "run": _run_names(apart).values,
            "run id": apart["run_id"].values,
            "status": apart["status"].values,
            "why not counted": apart["reason"].values,
        }
    )


def sole_grid_experiment(tracking_uri: str) -> str:
    """The name of the only ``grid-*`` experiment in the store; UserError if there are none or several."""
    mlflow.set_tracking_uri(tracking_uri)
    names = sorted(e.name for e in mlflow.search_experiments() if e.name.startswith("grid-"))
    if len(names) != 1:
        raise UserError(
            f"{tracking_uri} holds {len(names)} grid experiments ({', '.join(names) or 'none'}); choose one with --experiment"
        )
    return names[0]


def _budget(run: pd.Series) -> LabelBudget | None:
    """The run's label budget, from its ``label_subjects`` or ``label_fraction`` tag (None without either)."""
    subjects = run.get(Tag.LABEL_SUBJECTS)
    if isinstance(subjects, str) and subjects:
        return LabelBudget.of_subjects(int(subjects))
    fraction = run.get(Tag.LABEL_FRACTION)
    return LabelBudget.of_fraction(fraction) if pd.notna(fraction) else None


def _sized(cells: pd.DataFrame, budgets: list[LabelBudget | None]) -> list[LabelBudget | None]:
    """``budgets`` with the number of subjects each labelled (the cells' ``labelled_subjects`` parameter), so that they
    sort by size: 10 % of 24 subjects (2) before 5 subjects."""
    column = f"params.{Param.LABELLED_SUBJECTS}"
    counts = pd.to_numeric(cells[column], errors="coerce") if column in cells else pd.Series(float("nan"), cells.index)
    sizes = pd.DataFrame({"budget": budgets, "count": counts.values}).dropna().groupby("budget")["count"].max()
    return [None if b is None else replace(b, labelled=int(sizes[b]) if b in sizes else None) for b in budgets]


def finetune_runs(runs: pd.DataFrame, task: str) -> pd.DataFrame:
    """The finetune runs of ``task`` with ``budget`` (a :class:`LabelBudget`), ``protocol`` (runs written before
    protocols: finetune), ``initialisation`` (table label) and integer ``seed`` columns."""
    if runs.empty or Tag.KIND not in runs:
        return pd.DataFrame()
    cells = runs[(runs[Tag.KIND] == Kind.FINETUNE) & (runs[Tag.DOWNSTREAM_TASK] == task)].copy()
    cells["budget"] = _sized(cells, [_budget(run) for _, run in cells.iterrows()])
    protocols = cells[Tag.PROTOCOL] if Tag.PROTOCOL in cells else pd.Series(None, index=cells.index, dtype=object)
    cells["protocol"] = protocols.fillna(Protocol.FINETUNE)
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


def cell_tables(
    tracking_uri: str, cells: pd.DataFrame, artifact: str, folder: Path
) -> tuple[list[tuple[pd.Series, pd.DataFrame]], list[str]]:
    """Each FINISHED cell with its ``artifact`` CSV read as a table; and the FINISHED cells (``name (run id)``) that have
    no such file, or one that cannot be read as a table."""
    tables, missing = [], []
    finished = cells[cells["status"] == "FINISHED"]
    for (_, cell), name in zip(finished.iterrows(), _run_names(finished)):
        path = download_artifact(tracking_uri, cell["run_id"], artifact, folder)
        if path is None:
            missing.append(f"{name} (run {cell['run_id']})")
            continue
        try:
            tables.append((cell, pd.read_csv(path)))
        except ValueError as error:  # empty or unparsable
            missing.append(f"{name} (run {cell['run_id']}; unreadable: {type(error).__name__})")
    return tables, missing
