"""The two job functions: pretrain a pretext task and export its weights; finetune and evaluate a downstream cell."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import platform
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import yaml
from torch import nn

from benchmark.batches import device_batches, step_generator
from benchmark.checkpoints import Checkpoint
from benchmark.grid import FROZEN, KNN, GridConfig, TrainConfig
from benchmark.planner import FinetuneCell, PretrainJob
from benchmark.tracking import JobRun, Tracker
from benchmark.training import train
from ssl_medbench.core.errors import DataError
from ssl_medbench.core.run_tags import Artifact, Kind, MetricPrefix, Param, Tag
from ssl_medbench.core.sampling import Batch, BatchSampler
from ssl_medbench.datasets.augmentation import BatchAugmentation
from ssl_medbench.datasets.base import Dataset, Volume
from ssl_medbench.downstream.base import DownstreamTask
from ssl_medbench.networks.encoder import create_encoder
from ssl_medbench.networks.knn import KNNClassifier
from ssl_medbench.networks.weights import export_weights, import_weights
from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import DECODER, ENCODER, PretextNetwork, PretextTask

#: Examples shown in each pretrain job's preview figure.
PREVIEW_EXAMPLES = 4
#: Images encoded per forward pass when the knn protocol builds its bank of labelled features.
KNN_BATCH = 64


@dataclass
class RunContext:
    """What every job of one grid run shares."""

    grid: GridConfig
    device: torch.device
    tracker: Tracker
    datasets: dict[str, Dataset]
    #: Per-epoch checkpoints of running jobs go here (``<run folder>/checkpoints``); must be reachable by every worker.
    checkpoint_dir: Path
    deterministic: bool = False

    def load(self, dataset: str, subject_ids: list[str] | tuple[str, ...]) -> list[Volume]:
        return [self.datasets[dataset].load(subject) for subject in subject_ids]

    def checkpoint(self, key: str) -> Checkpoint:
        return Checkpoint(self.checkpoint_dir / f"{key}.pt", self.grid.runtime.checkpoint_every)


def job_seeds(seed: int, weight_stream: int = 0) -> tuple[int, int, int]:
    """Independent streams from one job seed: weight init, batch sampling, batch corruption/augmentation.

    ``weight_stream`` > 0 draws the weight-init seed from a child of the job seed (the negative control's own
    stream) and leaves the other two unchanged."""
    init, sampling, corruption = np.random.SeedSequence(seed).generate_state(3)
    if weight_stream:
        init = np.random.SeedSequence(seed, spawn_key=(weight_stream,)).generate_state(1)[0]
    return int(init), int(sampling), int(corruption)


def input_shape(sampler: BatchSampler) -> tuple[int, ...]:
    """(C, H, W) of one input ``sampler`` draws (from a generator of its own: the job's streams are untouched); for
    a job that resumed after its last training step and so saw no batch."""
    inputs, _ = sampler.sample(1, torch.Generator().manual_seed(0))
    return tuple(inputs.shape[1:])


def suite_version() -> str:
    """The installed ssl-medbench version, or "source" when run from a checkout without installing."""
    try:
        return importlib.metadata.version("ssl-medbench")
    except importlib.metadata.PackageNotFoundError:
        return "source"


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the source checkout the suite runs from (with "+dirty" if it has changes), or "unknown"."""
    source = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _common_tags(ctx: RunContext, kind: str, key: str, initialisation: str, dataset: str, seed: int) -> dict[str, str]:
    data = ctx.datasets[dataset]
    return {
        Tag.GRID: ctx.grid.name,
        Tag.KIND: kind,
        Tag.JOB_KEY: key,
        Tag.INITIALISATION: initialisation,
        Tag.INITIALISATION_LABEL: PRETEXT_TASKS.get(initialisation).label or initialisation,
        Tag.DATASET: dataset,
        Tag.DATASET_TYPE: ctx.grid.dataset_type(dataset),
        Tag.DATASET_SHA256: data.content_hash(),
        Tag.TEST_SUBJECTS_SHA256: data.split().test_hash(),
        Tag.SEED: str(seed),
        Tag.DEVICE: str(ctx.device),
        Tag.AUTOCAST: "bf16" if ctx.grid.runtime.uses_bf16(ctx.device) else "off",
        Tag.RUNTIME_IGNORED: ",".join(ctx.grid.runtime.ignored_on(ctx.device)),
        Tag.DETERMINISTIC: str(ctx.deterministic).lower(),
        Tag.SUITE_VERSION: suite_version(),
        Tag.GIT_COMMIT: git_commit(),
        Tag.TORCH_VERSION: torch.__version__,
        Tag.TIMM_VERSION: timm.__version__,
        Tag.PYTHON_VERSION: platform.python_version(),
        Tag.SPATIAL_DIMS: str(ctx.grid.spatial_dims),
    }


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: json.dumps(value) if isinstance(value, (list, tuple)) else value}


def _log_config(ctx: RunContext, run: JobRun, sections: dict[str, Any]) -> None:
    """The job's configuration sections as flattened parameters, and with the whole grid as ``resolved_config.yaml``."""
    plain = json.loads(json.dumps(sections, default=asdict))
    run.log_params(_flatten("", plain))
    grid = json.loads(json.dumps(ctx.grid.to_dict()))
    document = yaml.safe_dump({"job": plain, "grid": grid}, sort_keys=False)
    run.log_files({Artifact.RESOLVED_CONFIG: lambda path: path.write_text(document)})


def _train_logged(
    ctx: RunContext,
    run: JobRun,
    network: nn.Module,
    batches: Callable[[int], Iterator[Batch]],
    loss: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    schedule: TrainConfig,
    prefix: str,
    name: str,
    checkpoint: Checkpoint,
    frozen: nn.Module | None = None,
) -> None:
    """Train ``network`` (but its ``frozen`` part) on ``batches`` by ``schedule``, logging each epoch's mean loss
    terms under ``prefix``."""
    train(
        network,
        batches,
        loss,
        schedule,
        on_epoch=lambda epoch, losses: run.log_metrics({f"{prefix}{k}": v for k, v in losses.items()}, step=epoch),
        description=name,
        runtime=ctx.grid.runtime,
        device=ctx.device,
        checkpoint=checkpoint,
        frozen=frozen,
    )


def run_pretrain(job: PretrainJob, ctx: RunContext) -> str:
    """Pretrain ``job``'s pretext task on the training split's unlabeled images; returns the MLflow run id."""
    if job.downstream_task is not None:
        return run_supervised_pretrain(job, ctx)
    grid = ctx.grid
    task = grid.initialisation(job.initialisation, job.dataset, job.view)
    assert isinstance(task, PretextTask)
    dataset = ctx.datasets[job.dataset]
    tags = _common_tags(ctx, Kind.PRETRAIN, job.key, job.initialisation, job.dataset, job.seed)
    checkpoint = ctx.checkpoint(job.key)
    with ctx.tracker.job_run(job.name, tags) as run:
        _log_config(
            ctx,
            run,
            {"pretext": task.config, "pretrain": grid.pretrain, "encoder": grid.encoder, "runtime": grid.runtime},
        )
        init_seed, sampling_seed, corruption_seed = job_seeds(job.seed)
        torch.manual_seed(init_seed)
        in_chans = len(dataset.channels)
        network = PretextNetwork.for_task(task, create_encoder(grid.encoder, in_chans), in_chans).to(ctx.device)
        sampler = job.view.unlabelled_sampler(ctx.load(job.dataset, dataset.split().train))
        batches = device_batches(
            sampler,
            grid.pretrain,
            sampling_seed,
            grid.runtime,
            ctx.device,
            lambda step, images, _: task.make_batch(images, step_generator(corruption_seed, step, ctx.device)),
        )
        _train_logged(ctx, run, network, batches, task.loss, grid.pretrain, MetricPrefix.PRETRAIN, job.name, checkpoint)
        examples = sampler.sample(PREVIEW_EXAMPLES, torch.Generator().manual_seed(sampling_seed))[0]
        shape = tuple(examples.shape[1:])
        run.set_tag(Tag.PRETEXT_VIEW, job.view.describe(shape))
        run.set_tag(Tag.PRETEXT_INPUT_SHAPE, "x".join(map(str, shape)))
        run.log_params({f"geometry.{name}": value for name, value in task.geometry(min(shape[-2:])).items()})
        _log_pretext_outputs(run, task, network, examples, ctx.device)
        parts = {name: getattr(network, name) for name in task.transfers}
        metadata = {
            "pretext_task": job.initialisation,
            "pretext_config": asdict(task.config),
            "seed": job.seed,
            "job_key": job.key,
        }
        run.log_folder(lambda folder: export_weights(folder, parts, grid.encoder, in_chans, metadata), Artifact.WEIGHTS)
    checkpoint.discard()
    return run.run_id


def run_supervised_pretrain(job: PretrainJob, ctx: RunContext) -> str:
    """The positive control's pretraining: ``job.downstream_task`` trained on the labels of every training subject
    by that task's finetune schedule; exports the model's encoder (and decoder, if it has one). Returns the run id."""
    grid = ctx.grid
    dataset = ctx.datasets[job.dataset]
    task_name = str(job.downstream_task)
    task = _downstream_task(ctx, task_name, job.dataset)
    schedule = grid.finetune_for(task_name)
    tags = _common_tags(ctx, Kind.PRETRAIN, job.key, job.initialisation, job.dataset, job.seed)
    tags[Tag.DOWNSTREAM_TASK] = task_name
    checkpoint = ctx.checkpoint(job.key)
    with ctx.tracker.job_run(job.name, tags) as run:
        _log_config(ctx, run, {"downstream": task.config, "pretrain": schedule, "encoder": grid.encoder})
        labelled = dataset.labelled_subjects(1.0, job.seed)
        run.log_params({Param.LABELLED_SUBJECTS: len(labelled)})
        init_seed, sampling_seed, _ = job_seeds(job.seed)
        torch.manual_seed(init_seed)
        in_chans = len(dataset.channels)
        model = task.build_model(create_encoder(grid.encoder, in_chans), None).to(ctx.device)
        sampler = task.make_sampler(ctx.load(job.dataset, labelled))
        batches = device_batches(
            sampler, schedule, sampling_seed, grid.runtime, ctx.device, lambda _, inputs, targets: (inputs, targets)
        )
        _train_logged(ctx, run, model, batches, task.loss, schedule, MetricPrefix.PRETRAIN, job.name, checkpoint)
        shape = input_shape(sampler)
        run.set_tag(Tag.PRETEXT_VIEW, job.view.describe(shape))
        run.set_tag(Tag.PRETEXT_INPUT_SHAPE, "x".join(map(str, shape)))
        parts = {name: getattr(model, name) for name in (ENCODER, DECODER) if getattr(model, name, None) is not None}
        if ENCODER not in parts:
            raise TypeError(f"{job.downstream_task}'s model has no 'encoder' attribute, so its weights cannot transfer")
        metadata = {
            "pretext_task": job.initialisation,
            "downstream_task": task_name,
            "seed": job.seed,
            "job_key": job.key,
        }
        run.log_folder(lambda folder: export_weights(folder, parts, grid.encoder, in_chans, metadata), Artifact.WEIGHTS)
    checkpoint.discard()
    return run.run_id


def _downstream_task(ctx: RunContext, name: str, dataset: str) -> DownstreamTask:
    data = ctx.datasets[dataset]
    return ctx.grid.downstream_task(name, len(data.channels), data.class_names)


def _log_pretext_outputs(
    run: JobRun, task: PretextTask, network: PretextNetwork, images: torch.Tensor, device: torch.device
) -> None:
    """Log ``pretext/preview.png`` (inputs, corruptions, outputs of a few examples) and the task's own artifacts."""
    network.eval()
    with torch.no_grad():
        inputs, targets = task.make_batch(images.to(device), torch.Generator(device=device).manual_seed(0))
        outputs = network(inputs)
    figure = task.preview(inputs.cpu(), targets.cpu(), outputs.cpu())

    def fill(folder: Path) -> None:
        figure.savefig(folder / Path(Artifact.PREVIEW).name, dpi=110)
        task.write_artifacts(folder)

    run.log_folder(fill, Artifact.PRETEXT)


def _transferred_parts(
    ctx: RunContext, run_id: str, accepts: tuple[str, ...], in_chans: int
) -> tuple[nn.Module, nn.Module | None]:
    """Rebuild the pretrained encoder (and decoder, if exported and accepted) from the run's manifest, loaded strictly."""
    with tempfile.TemporaryDirectory() as folder:
        weights = ctx.tracker.download(run_id, Artifact.WEIGHTS, Path(folder))
        manifest, encoder, decoder = import_weights(weights)
    if manifest["in_chans"] != in_chans:
        raise DataError(
            f"pretrained weights of run {run_id} take {manifest['in_chans']} channels, the dataset has {in_chans}"
        )
    return encoder, decoder if "decoder" in accepts else None


def run_finetune(cell: FinetuneCell, ctx: RunContext, pretrain_run_id: str | None) -> str:
    """Evaluate the cell's initialisation on its downstream task by its protocol, with the labels of its budget's
    subjects (fine-tune, train around the frozen encoder, or vote by nearest neighbours), and score it on the test
    split; returns the run id."""
    grid = ctx.grid
    dataset = ctx.datasets[cell.dataset]
    task = _downstream_task(ctx, cell.downstream_task, cell.dataset)
    initialisation = grid.initialisation(cell.initialisation)
    augmented = initialisation.finetune_augmentation() is not None and cell.protocol != KNN  # knn trains nothing
    tags = _common_tags(ctx, Kind.FINETUNE, cell.key, cell.initialisation, cell.dataset, cell.seed)
    tags |= {key: f"{value:g}" for key, value in cell.budget.setting().items()}  # label_fraction or label_subjects
    tags |= {
        Tag.DOWNSTREAM_TASK: cell.downstream_task,
        Tag.PROTOCOL: cell.protocol,
        Tag.PRETRAIN_KEY: cell.pretrain_key or "",
        Tag.PRETRAIN_RUN_ID: pretrain_run_id or "",
        Tag.AUGMENTATION: "on" if augmented else "off",
        Tag.METRIC_UNITS: json.dumps(task.metric_units),
        Tag.METRIC_DIRECTIONS: json.dumps(task.metric_directions),
        Tag.METRIC_CONVENTIONS: json.dumps(task.metric_conventions()),
    }
    with ctx.tracker.job_run(cell.name, tags) as run:
        if cell.pretrain_key and pretrain_run_id is None:
            raise RuntimeError(f"its pretrain job ({cell.initialisation}, seed {cell.seed}) did not finish")
        how = {"knn": grid.knn} if cell.protocol == KNN else {"finetune": grid.finetune_for(cell.downstream_task)}
        sections = {"initialisation": initialisation.config, "downstream": task.config, **how, "encoder": grid.encoder}
        _log_config(ctx, run, sections | cell.budget.setting() | {"protocol": cell.protocol, "runtime": grid.runtime})
        split = dataset.split()
        labelled = dataset.labelled_subjects(cell.budget, cell.seed)
        run.log_params({Param.LABELLED_SUBJECTS: len(labelled), Param.TEST_SUBJECTS: len(split.test)})
        init_seed, sampling_seed, augmentation_seed = job_seeds(cell.seed, initialisation.weight_stream)
        torch.manual_seed(init_seed)
        if pretrain_run_id is None:
            encoder, decoder = create_encoder(grid.encoder, len(dataset.channels)), None
        else:
            encoder, decoder = _transferred_parts(ctx, pretrain_run_id, task.accepts, len(dataset.channels))
            run.set_tag(Tag.TRANSFERRED_PARTS, "encoder,decoder" if decoder is not None else "encoder")
        training = ctx.load(cell.dataset, labelled)
        if cell.protocol == KNN:
            model, shape = _knn_model(ctx, run, task, encoder, training)
        else:
            parts, seeds = (encoder, decoder), (sampling_seed, augmentation_seed)
            model, shape = _trained_model(
                ctx, run, cell, task, parts, initialisation.finetune_augmentation(), training, seeds
            )
        run.set_tag(Tag.DOWNSTREAM_INPUT_SHAPE, "x".join(map(str, shape)))
        test = ctx.load(cell.dataset, split.test)
        per_subject = task.evaluate(model, test, ctx.device)
        run.set_tag(Tag.NEVER_PREDICTED, ",".join(task.never_predicted(per_subject)))
        reference = task.image_blind_scores(training, test) if initialisation.scores_reference else None

        def fill(folder: Path) -> None:
            per_subject.to_csv(folder / Artifact.PER_SUBJECT_METRICS, index=False)
            if reference is not None:
                reference.to_csv(folder / Artifact.IMAGE_BLIND_PER_SUBJECT, index=False)
            (folder / Artifact.LABELLED_SUBJECTS).write_text("\n".join(labelled) + "\n")
            (folder / Artifact.TEST_SUBJECTS).write_text("\n".join(split.test) + "\n")
            task.write_artifacts(per_subject, folder)

        run.log_folder(fill)
        run.log_metrics(task.summarise(per_subject))
    ctx.checkpoint(cell.key).discard()
    return run.run_id


def _trained_model(
    ctx: RunContext,
    run: JobRun,
    cell: FinetuneCell,
    task: DownstreamTask,
    parts: tuple[nn.Module, nn.Module | None],
    augmentation: BatchAugmentation | None,
    training: list[Volume],
    seeds: tuple[int, int],
) -> tuple[nn.Module, tuple[int, ...]]:
    """The task's network trained on the labelled ``training`` volumes, its batches through the initialisation's
    ``augmentation`` (if any): all of it (``finetune``), or all but the encoder (``frozen``:
    :meth:`DownstreamTask.build_frozen_model`); and the (C, H, W) it took."""
    encoder, decoder = parts
    sampling_seed, augmentation_seed = seeds
    schedule = ctx.grid.finetune_for(cell.downstream_task)
    build = task.build_frozen_model if cell.protocol == FROZEN else task.build_model
    model = build(encoder, decoder).to(ctx.device)
    sampler = task.make_sampler(training)
    trained_on: list[tuple[int, ...]] = []  # (C, H, W) of the first training batch: what the network took

    def augmented(step: int, inputs: torch.Tensor, targets: torch.Tensor) -> Batch:
        if not trained_on:
            trained_on.append(tuple(inputs.shape[1:]))
        if augmentation is None:
            return inputs, targets
        return augmentation(inputs, targets, step_generator(augmentation_seed, step, ctx.device), task.target_geometry)

    batches = device_batches(sampler, schedule, sampling_seed, ctx.grid.runtime, ctx.device, augmented)
    checkpoint, frozen = ctx.checkpoint(cell.key), model.encoder if cell.protocol == FROZEN else None
    _train_logged(ctx, run, model, batches, task.loss, schedule, MetricPrefix.FINETUNE, cell.name, checkpoint, frozen)
    return model, trained_on[0] if trained_on else input_shape(sampler)  # none: resumed after its last step


def _knn_model(
    ctx: RunContext, run: JobRun, task: DownstreamTask, encoder: nn.Module, training: list[Volume]
) -> tuple[KNNClassifier, tuple[int, ...]]:
    """The ``knn`` protocol's classifier: the encoder with the pooled features of every labelled image; and the
    (C, H, W) of those images."""
    images, classes = task.labelled_images(training)
    model = KNNClassifier.fit(
        encoder, images, classes, len(task.class_names), ctx.grid.knn.neighbours, KNN_BATCH, ctx.device
    )
    run.log_params({Param.KNN_BANK_IMAGES: len(images), Param.KNN_NEIGHBOURS_USED: model.neighbours})
    return model, tuple(images.shape[1:])
