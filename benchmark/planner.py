"""Expand a grid into pretrain jobs and finetune cells, each with a key that identifies its result.

A pretrain job is (pretext task + config, dataset version, input view, encoder, pretrain schedule, seed) and is
shared by every label budget, protocol and downstream task on that dataset whose network takes that view
(:mod:`ssl_medbench.datasets.views`); two views of one dataset pretrain twice. Supervised pretraining trains on one
downstream task's labels, so its job also holds that task and its config, and is shared by that task's cells only. A
finetune cell is (initialisation, downstream task + config, dataset version, label budget, evaluation protocol, seed,
schedule) plus the key of the pretrain job it starts from. Any change to these changes the key, so a stale result
is never reused. A ``knn`` cell trains nothing, so an initialisation that only augments training (random
augmentation) would repeat Random's knn cell: it gets none.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

from benchmark.grid import FINETUNE, KNN, GridConfig
from ssl_medbench.core.errors import ConfigError
from ssl_medbench.datasets.base import Dataset
from ssl_medbench.datasets.splits import LabelBudget
from ssl_medbench.datasets.views import InputView
from ssl_medbench.pretext_tasks import PRETEXT_TASKS

#: 2: batches drawn per step from seeds derived from (job seed, step); precision in the key.
#: 3: pretraining samples the downstream task's input view (the view in the key); misses scored in localisation.
#: 4: schedules carry their learning-rate schedule and warm-up fraction.
#: Cells of another protocol than finetune, or of a budget in subjects, add ``protocol`` / ``label_subjects`` to the
#: payload, and jobs of a 3D grid ``spatial_dims``; a 2D finetune cell at a label fraction keeps its version-4
#: payload, so its stored results stay valid.
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
    budget: LabelBudget
    seed: int
    pretrain_key: str | None
    #: The evaluation protocol (:data:`benchmark.grid.PROTOCOLS`).
    protocol: str = FINETUNE

    @property
    def name(self) -> str:
        return f"{self.protocol}/{self.initialisation}/{self.downstream_task}/{self.budget.slug}/seed{self.seed}"


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
            f"  label budgets: {', '.join(map(str, grid.label_budgets))}; seeds: {', '.join(map(str, grid.seeds))}",
            f"  protocols: {_protocol_line(grid)}",
        ]
        for name in datasets:
            lines.append(f"  dataset {name}: {grid.dataset_type(name)} {grid.dataset_config(name)}")
        lines.append(f"  {self.pretrain_count_line(grid)}")
        return "\n".join(lines)

    def pretrain_count_line(self, grid: GridConfig) -> str:
        """How many pretrain jobs, against initialisations-with-pretraining x datasets x seeds: each job is shared
        by every label budget, protocol and downstream task on its dataset."""
        pretraining = [init for init in grid.initialisations if grid.pretrains(init)]
        views = {(cell.dataset, grid.input_view(cell.downstream_task)) for cell in self.finetune_cells}
        expected = len(pretraining) * len(views) * len(grid.seeds)
        line = (
            f"pretrain jobs: {len(self.pretrain_jobs)} = {len(pretraining)} initialisations with pretraining x "
            f"{len(views)} dataset views x {len(grid.seeds)} seeds, each shared by {len(grid.label_budgets)} label "
            "budgets, the protocols and every downstream task that takes its view of its dataset"
        )
        if len(self.pretrain_jobs) != expected:
            line = (
                f"pretrain jobs: {len(self.pretrain_jobs)} (not {expected} = {len(pretraining)} x {len(views)} x "
                f"{len(grid.seeds)}: datasets with identical content share their pretrain jobs)"
            )
        return line


def _protocol_line(grid: GridConfig) -> str:
    """The protocols of each downstream task, and the initialisations knn leaves out."""
    by_task = "; ".join(f"{task}: {', '.join(grid.protocols_for(task))}" for task in grid.downstream_tasks)
    skipped = [init for init in grid.initialisations if _augments_only(grid, init)]
    if skipped and any(KNN in grid.protocols_for(task) for task in grid.downstream_tasks):
        by_task += f" (knn trains nothing, so {', '.join(skipped)} would repeat Random there: not run)"
    return by_task


def _augments_only(grid: GridConfig, init: str) -> bool:
    """Whether initialisation ``init`` differs from Random only by augmenting training batches."""
    initialisation = grid.initialisation(init)
    return initialisation.finetune_augmentation() is not None and not initialisation.requires_pretraining


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
                    } | _dims(grid)
                    labels_of = task_name if PRETEXT_TASKS.get(init).uses_labels else None
                    if labels_of is not None:  # trained as the task is: its config and its finetune schedule
                        payload |= {"downstream_task": task_name, "downstream_config": task_config}
                        payload["schedule"] = grid.finetune_for(task_name)
                    pretrain_key = job_key(payload)
                    pretrain[pretrain_key] = PretrainJob(pretrain_key, init, dataset, seed, view, labels_of)
                for protocol in grid.protocols_for(task_name):
                    if protocol == KNN and _augments_only(grid, init):
                        continue
                    for budget in grid.label_budgets:
                        payload = {
                            "kind": "finetune",
                            "initialisation": init,
                            "initialisation_config": grid.pretext_config(init),
                            "pretrain_key": pretrain_key,
                            "downstream_task": task_name,
                            "downstream_config": task_config,
                            "dataset": dataset_versions[dataset],
                            "encoder": grid.encoder,
                            "seed": seed,
                            "precision": grid.runtime.precision,
                        } | _dims(grid)
                        payload |= _budget_and_protocol(budget, protocol)
                        # what the protocol uses: a schedule to train by, or the neighbours to vote
                        payload |= {"knn": grid.knn} if protocol == KNN else {"schedule": grid.finetune_for(task_name)}
                        key = job_key(payload)
                        cells.append(FinetuneCell(key, init, task_name, dataset, budget, seed, pretrain_key, protocol))
    _check_every_task_has_cells(grid, cells)
    return Plan(tuple(pretrain.values()), tuple(cells))


def _dims(grid: GridConfig) -> dict[str, Any]:
    """The key field of a 3D grid's jobs (``spatial_dims``); none for 2D, so 2D keys stay as they were."""
    return {} if grid.spatial_dims == 2 else {"spatial_dims": grid.spatial_dims}


def _budget_and_protocol(budget: LabelBudget, protocol: str) -> dict[str, Any]:
    """The key fields of a cell's budget and protocol: ``fraction`` as in version-4 keys, or ``label_subjects``; and
    ``protocol`` unless it is finetune (so a finetune cell at a fraction keeps its version-4 key)."""
    fields: dict[str, Any] = (
        {"fraction": budget.fraction} if budget.subjects is None else {"label_subjects": budget.subjects}
    )
    return fields if protocol == FINETUNE else fields | {"protocol": protocol}


def _check_every_task_has_cells(grid: GridConfig, cells: list[FinetuneCell]) -> None:
    """ConfigError if a downstream task got no cell (knn its only protocol, and only initialisations that augment)."""
    for task in grid.downstream_tasks:
        if not any(cell.downstream_task == task for cell in cells):
            raise ConfigError(
                f"protocols: {task} gets no cell: knn trains nothing, so {', '.join(grid.initialisations)} would "
                "repeat Random there; add random or another initialisation, or another protocol"
            )


def check_label_budgets(grid: GridConfig, datasets: dict[str, Dataset]) -> None:
    """Raise ConfigError before any job runs if a label budget leaves a downstream task without labelled subjects, asks
    for more subjects than its training split holds, or labels the same subjects as another budget (a fraction that
    comes to a subject count of the grid: the same cell twice)."""
    for task_name in grid.downstream_tasks:
        name = grid.downstream_config(task_name).dataset
        train = len(datasets[name].split().train)
        counted: dict[int, LabelBudget] = {}
        for budget in grid.label_budgets:
            key = "fractions" if budget.subjects is None else "label_subjects"
            try:
                count = len(datasets[name].labelled_subjects(budget, seed=grid.seeds[0]))
            except ConfigError as error:
                raise ConfigError(f"{key}: {task_name} on dataset {name}: {error}") from None
            if count in counted:
                raise ConfigError(
                    f"{key}: {task_name} on dataset {name}: {budget} and {counted[count]} both label {count} of its "
                    f"{train} training subjects, the same ones: drop one of them"
                )
            counted[count] = budget
