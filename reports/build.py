"""Write ``report.md`` for a grid: one table per downstream task, and the runs that failed."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from downstream import DOWNSTREAM_TASKS
from reports.runs import load_runs
from reports.tables import summary_table, to_markdown


def _metric_units(finetune: pd.DataFrame, task: str) -> dict[str, str]:
    """The metrics a task's cells recorded (tag ``metric_units``: they can depend on the data, e.g. organs), else the plugin's."""
    recorded = finetune.loc[finetune["downstream_task"] == task, "metric_units"].dropna() if "metric_units" in finetune else []
    if len(recorded):
        return json.loads(recorded.iloc[0])
    return DOWNSTREAM_TASKS.get(task).metric_units


def build_report(tracking_uri: str, experiment: str, out_dir: Path) -> Path:
    runs = load_runs(tracking_uri, experiment)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Report: {experiment}",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from `{tracking_uri}`.",
        "Cells: mean ± std over seeds (a single value when one seed finished); overlap metrics in %, distances in mm.",
        "",
    ]
    if runs.empty or "kind" not in runs:
        lines.append("No runs recorded yet.")
    else:
        finetune = runs[runs["kind"] == "finetune"]
        for task in sorted(finetune["downstream_task"].dropna().unique()):
            lines += [f"## {task}", "", to_markdown(summary_table(runs, task, _metric_units(finetune, task))), ""]
        unfinished = runs[runs["status"] != "FINISHED"]
        if len(unfinished):
            lines += ["## Runs not finished", ""]
            for _, run in unfinished.iterrows():
                lines.append(f"- {run.get('mlflow.runName', run['run_id'])}: {run['status']} {run.get('error') or ''}".rstrip())
            lines.append("")
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
