"""Expand a grid into pretrain jobs and finetune cells, each with a key that identifies its result.

A pretrain job is (pretext task + config, dataset version, input view, encoder, pretrain schedule, seed) and is
shared by every label fraction and every downstream task on that dataset whose network takes that view
(:mod:`ssl_medbench.datasets.views`); two views of one dataset pretrain twice. Supervised pretraining trains on one
downstream task's labels, so its job also holds that task and its config, and is shared by that task's fractions only. A finetune cell is
(initialisation, downstream task + config, dataset version, label fraction, seed, schedule) plus
the key of the pretrain job it starts from. Any change to these changes the key, so a stale result
is never reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

from benchmark.grid import GridConfig
from ssl_medbench.datasets.base import Dataset
from ssl_medbench.datasets.views import InputView
from ssl_medbench.pretext_tasks import PRETEXT_TASKS

#: 2: batches drawn per step from seeds derived from (job seed, step); precision in the key.
#: 3: pretraining samples the downstream task's input view (the view in the key); misses scored in localisation.
#: 4: schedules carry their learning-rate schedule and warm-up fraction.
KEY_VERSION = 4


def job_key(payload: dict[str, Any]) -> str:
    text = json.dumps({"key_version": KEY_VERSION, **payload}, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _jsonable(value: Any) -> Any:
    if isinstance(value, InputView):
        return {"view": value.kind, **asdict(value)}
    if is_dataclass(value):
        return asdict(value)
    raise TypeError(f"cannot put {value!r} in a job key")


@dataclass(frozen=True)
class PretrainJob:
    key: str
    initialisation: str
    dataset: str
    seed: int
    #: What the pretext task sees: the input view of the downstream tasks this job initialises.
    view: InputView
    #: The downstream task whose labels it trains on (supervised pretraining); None for a pretext task.
    downstream_task: str | None = None

    @property
    def name(self) -> str:
        task = f"/{self.downstream_task}" if self.downstream_task else ""
        return f"pretrain/{self.initialisation}{task}/{self.dataset}/{self.view.name}/seed{self.seed}"


@dataclass(frozen=True)
class FinetuneCell:
    key: str
    initialisation: str
    downstream_task: str
    dataset: str
    fraction: float
    seed: int
    pretrain_key: str | None

    @property
    def name(self) -> str:
        return f"finetune/{self.initialisation}/{self.downstream_task}/{self.fraction:g}/seed{self.seed}"


@dataclass(frozen=True)
class Plan:
    pretrain_jobs: tuple[PretrainJob, ...]
    finetune_cells: tuple[FinetuneCell, ...]

    def describe(self, grid: GridConfig, device: str) -> str:
        datasets = sorted({cell.dataset for cell in self.finetune_cells})
        lines = [
            f"grid {grid.name!r}: {len(self.pretrain_jobs)} pretrain jobs + {len(self.finetune_cells)} finetune cells on {device}",
            f"  initialisations: {', '.join(grid.initialisations)}",
            f"  downstream tasks: {', '.join(grid.downstream_tasks)}",
            f"  label fractions: {', '.join(f'{f:g}' for f in grid.fractions)}; seeds: {', '.join(map(str, grid.seeds))}",
        ]
        for name in datasets:
            lines.append(f"  dataset {name}: {grid.dataset_type(name)} {grid.dataset_config(name)}")
        lines.append(f"  {self.pretrain_count_line(grid)}")
        return "\n".join(lines)

    def pretrain_count_line(self, grid: GridConfig) -> str:
        """How many pretrain jobs, against initialisations-with-pretraining x datasets x seeds: each job is shared
        by every label fraction and downstream task on its dataset."""
        pretraining = [init for init in grid.initialisations if grid.pretrains(init)]
        views = {(cell.dataset, grid.input_view(cell.downstream_task)) for cell in self.finetune_cells}
        expected = len(pretraining) * len(views) * len(grid.seeds)
        line = (
            f"pretrain jobs: {len(self.pretrain_jobs)} = {len(pretraining)} initialisations with pretraining x "
            f"{len(views)} dataset views x {len(grid.seeds)} seeds, each shared by {len(grid.fractions)} label fractions "
            "and every downstream task that takes its view of its dataset"
        )
        if len(self.pretrain_jobs) != expected:
            line = (
                f"pretrain jobs: {len(self.pretrain_jobs)} (not {expected} = {len(pretraining)} x {len(views)} x "
                f"{len(grid.seeds)}: datasets with identical content share their pretrain jobs)"
            )
        return line


def plan_grid(grid: GridConfig, dataset_versions: dict[str, str]) -> Plan:
    """All jobs of ``grid``; ``dataset_versions`` maps each grid dataset to its content/split identity."""
    # By key: two grid datasets with the same content and split give the same key, so they share one pretrain job.
    pretrain: dict[str, PretrainJob] = {}
    cells = []
    for task_name in grid.downstream_tasks:
        task_config = grid.downstream_config(task_name)
        dataset = task_config.dataset
        view = grid.input_view(task_name)
        for init in grid.initialisations:
            requires_pretraining = grid.pretrains(init)
            for seed in grid.seeds:
                pretrain_key = None
                if requires_pretraining:
                    payload = {
                        "kind": "pretrain",
                        "initialisation": init,
                        "config": grid.pretext_config_for(init, dataset, view),
                        "dataset": dataset_versions[dataset],
                        "view": view,
                        "encoder": grid.encoder,
                        "schedule": grid.pretrain,
                        "seed": seed,
                        "precision": grid.runtime.precision,
                    }
                    labels_of = task_name if PRETEXT_TASKS.get(init).uses_labels else None
                    if labels_of is not None:  # trained as the task is: its config and its finetune schedule
                        payload |= {"downstream_task": task_name, "downstream_config": task_config}
                        payload["schedule"] = grid.finetune_for(task_name)
                    pretrain_key = job_key(payload)
                    pretrain[pretrain_key] = PretrainJob(pretrain_key, init, dataset, seed, view, labels_of)
                for fraction in grid.fractions:
                    key = job_key(
                        {
                            "kind": "finetune",
                            "initialisation": init,
                            "initialisation_config": grid.pretext_config(init),
                            "pretrain_key": pretrain_key,
                            "downstream_task": task_name,
                            "downstream_config": task_config,
                            "dataset": dataset_versions[dataset],
                            "encoder": grid.encoder,
                            "schedule": grid.finetune_for(task_name),
                            "fraction": fraction,
                            "seed": seed,
                            "precision": grid.runtime.precision,
                        }
                    )
                    cells.append(FinetuneCell(key, init, task_name, dataset, fraction, seed, pretrain_key))
    return Plan(tuple(pretrain.values()), tuple(cells))


def check_label_fractions(grid: GridConfig, datasets: dict[str, Dataset]) -> None:
    """Raise ConfigError before any job runs if a label fraction leaves a downstream task without labelled subjects."""
    for task_name in grid.downstream_tasks:
        dataset = datasets[grid.downstream_config(task_name).dataset]
        for fraction in grid.fractions:
            dataset.labelled_subjects(fraction, seed=grid.seeds[0])
