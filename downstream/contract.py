"""The contract every downstream task meets, as reusable checks: shipped so third-party plugins test themselves the same way.

The suite's own tests run every check on every registered downstream task; a plugin's tests do::

    from ssl_medbench.downstream.contract import DOWNSTREAM_CHECKS, check_downstream_task

    def test_my_task_meets_the_contract():
        check_downstream_task(MyTask)

or parametrise over ``DOWNSTREAM_CHECKS`` for one test per check. The data come from the task itself
(:meth:`DownstreamTask.example_data`), the network is a tiny ``chen_vgg`` encoder (with the U-Net
decoder where the task accepts one), and everything runs on CPU in seconds. A failed check raises
AssertionError naming the task and the check. The image-blind reference
(:meth:`DownstreamTask.image_blind_scores`) is fitted on the example subjects and scored on them: its table must
have :meth:`DownstreamTask.evaluate`'s rows and columns and stay the same when the images are replaced by noise.
A task with a 3D form passes the same checks in it with :func:`volumes_setup` (a tiny ``chen_vgg3d``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ssl_medbench.core.config_parsing import parse_dataclass
from ssl_medbench.core.contracts import contract_check, expect
from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.views import InputView
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.downstream.base import DownstreamTask, ExampleData, MetricSpec
from ssl_medbench.networks.encoder import EncoderConfig, create_encoder
from ssl_medbench.networks.unet_decoder import UNetDecoder

CPU = torch.device("cpu")


@dataclass(frozen=True)
class ContractSetup:
    """Batch and network sizes the checks use."""

    batch: int = 4
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(kwargs={"channels": [8, 16, 32]}))
    seed: int = 0
    #: Config values of the task under test, as a grid file would give them (empty: the defaults).
    task_config: dict[str, Any] = field(default_factory=dict)
    #: 2: the task's 2D form; 3: its 3D form, with a 3D encoder.
    spatial_dims: int = 2


def volumes_setup(task_config: dict[str, Any] | None = None) -> ContractSetup:
    """The setup of the checks of a task's 3D form: a tiny ``chen_vgg3d`` and the task's ``task_config`` (e.g. a
    small ``patch_size``, so that the checks run in seconds)."""
    encoder = EncoderConfig(name="chen_vgg3d", kwargs={"channels": [8, 16, 32]})
    return ContractSetup(encoder=encoder, task_config=task_config or {}, spatial_dims=3)


DownstreamCheck = Callable[[type[DownstreamTask], ContractSetup], None]

#: Every check a downstream task must pass, by name (filled by :func:`_check` in definition order).
DOWNSTREAM_CHECKS: dict[str, DownstreamCheck] = {}


def _check(name: str) -> Callable[[DownstreamCheck], DownstreamCheck]:
    """Add a check to :data:`DOWNSTREAM_CHECKS` under ``name``."""
    return contract_check(DOWNSTREAM_CHECKS, DOWNSTREAM_TASKS, name)


def _task(cls: type[DownstreamTask], setup: ContractSetup) -> tuple[DownstreamTask, ExampleData]:
    data = cls.example_data(np.random.default_rng(setup.seed))
    config = parse_dataclass(cls.Config, setup.task_config, cls.__name__)
    return cls.build(config, data.channels, data.class_names, setup.spatial_dims), data


def _model(task: DownstreamTask, data: ExampleData, setup: ContractSetup, with_decoder: bool) -> nn.Module:
    torch.manual_seed(setup.seed)
    encoder = create_encoder(setup.encoder, data.channels)
    return task.build_model(encoder, UNetDecoder.for_encoder(encoder) if with_decoder else None)


def _evaluated(cls: type[DownstreamTask], setup: ContractSetup) -> tuple[DownstreamTask, ExampleData, pd.DataFrame]:
    """The task, its data and its evaluation table of the example subjects, for a freshly built model."""
    task, data = _task(cls, setup)
    return task, data, task.evaluate(_model(task, data, setup, "decoder" in task.accepts), list(data.volumes), CPU)


def _scores(cls: type[DownstreamTask], data: ExampleData, table: pd.DataFrame) -> pd.DataFrame:
    return cls.subject_scores(table, list(cls.metric_specs(data.class_names)))


@_check("builds_from_default_config")
def check_builds_from_default_config(cls: type[DownstreamTask], setup: ContractSetup) -> None:
    """Its ``Config`` is a frozen dataclass with a ``dataset`` field whose defaults parse from an empty mapping;
    it builds for its example data and declares what it accepts and how its targets move."""
    expect(
        dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen,
        "Config must be a frozen dataclass",
    )
    expect(
        "dataset" in {f.name for f in dataclasses.fields(cls.Config)}, "Config needs a 'dataset' field (its dataset)"
    )
    expect(
        parse_dataclass(cls.Config, {}, cls.__name__) == cls.Config(),
        "the default config does not round-trip through the grid parser",
    )
    task, data = _task(cls, setup)
    expect(len(data.volumes) > 0, "example_data gives no volumes")
    expect(
        "encoder" in task.accepts and set(task.accepts) <= {"encoder", "decoder"},
        f"accepts must name the encoder and optionally the decoder, got {task.accepts}",
    )
    expect(
        task.target_geometry in (None, "dense", "invariant"),
        f"target_geometry must be None, 'dense' or 'invariant', got {task.target_geometry!r}",
    )


@_check("metadata_consistent")
def check_metadata_consistent(cls: type[DownstreamTask], setup: ContractSetup) -> None:
    """Metrics read from the class (with and without class names) have a direction and a unit, the primary endpoint
    is one of them, and an instance reports the same ones."""
    task, data = _task(cls, setup)
    expect(bool(cls.primary_metric), "primary_metric is not declared (the metric initialisations are compared by)")
    for class_names in ((), data.class_names):
        specs = cls.metric_specs(class_names)
        expect(bool(specs), f"metric_specs({class_names!r}) declares no metric")
        expect(
            cls.primary_metric in specs,
            f"primary_metric {cls.primary_metric!r} is not a metric of metric_specs({class_names!r})",
        )
        for name, spec in specs.items():
            expect(isinstance(spec, MetricSpec), f"metric {name!r}: expected a MetricSpec, got {spec!r}")
            expect(
                spec.direction in ("higher", "lower"),
                f"metric {name!r}: direction must be 'higher' or 'lower', got {spec.direction!r}",
            )
            expect(isinstance(spec.unit, str) and spec.unit != "", f"metric {name!r} has no unit")
    expect(
        task.metric_directions == cls.metric_directions_for(data.class_names),
        f"the instance's metric_directions {task.metric_directions} differ from the class's",
    )
    expect(
        task.metric_units == cls.metric_units_for(data.class_names),
        f"the instance's metric_units {task.metric_units} differ from the class's",
    )


@_check("builds_model")
def check_builds_model(cls: type[DownstreamTask], setup: ContractSetup) -> None:
    """``build_model`` takes a fresh encoder, with and without a decoder as ``accepts`` says, keeps the very parts
    it was given (pretrained weights must not be copied away), and its output has one entry per example of a batch."""
    task, data = _task(cls, setup)
    inputs, _ = task.make_sampler(list(data.volumes)).sample(setup.batch, torch.Generator().manual_seed(setup.seed))
    for with_decoder in (False, True) if "decoder" in task.accepts else (False,):
        torch.manual_seed(setup.seed)
        encoder = create_encoder(setup.encoder, data.channels)
        decoder = UNetDecoder.for_encoder(encoder) if with_decoder else None
        model = task.build_model(encoder, decoder)
        expect(isinstance(model, nn.Module), f"build_model returned {type(model).__name__}, not an nn.Module")
        expect(getattr(model, "encoder", None) is encoder, "the model must keep the encoder it was given as 'encoder'")
        if with_decoder:
            expect(model.decoder is decoder, "the model must keep the decoder it was given as 'decoder'")
        with torch.no_grad():
            outputs = model.eval()(inputs)
        expect(
            outputs.shape[0] == setup.batch,
            f"with{'' if with_decoder else 'out'} a decoder: output shape {tuple(outputs.shape)} for a batch of {setup.batch}",
        )


@_check("sampler_batches")
def check_sampler_batches(cls: type[DownstreamTask], setup: ContractSetup) -> None:
    """The sampler's inputs (B, C, H, W), or (B, C, D, H, W) in 3D, and targets (B, ...) are finite CPU tensors, the
    same for the same generator seed, drawn without the global RNG."""
    task, data = _task(cls, setup)
    sampler = task.make_sampler(list(data.volumes))
    global_state = torch.get_rng_state()
    first = sampler.sample(setup.batch, torch.Generator().manual_seed(1))
    again = sampler.sample(setup.batch, torch.Generator().manual_seed(1))
    expect(torch.equal(torch.get_rng_state(), global_state), "the sampler draws from the global RNG")
    inputs, targets = first
    expect(isinstance(inputs, torch.Tensor) and isinstance(targets, torch.Tensor), "sample must return two tensors")
    spatial = "H, W" if setup.spatial_dims == 2 else "D, H, W"
    expect(
        inputs.ndim == 2 + setup.spatial_dims and inputs.shape[:2] == (setup.batch, data.channels),
        f"inputs shape {tuple(inputs.shape)}, expected ({setup.batch}, {data.channels}, {spatial})",
    )
    expect(targets.shape[0] == setup.batch, f"targets shape {tuple(targets.shape)} for a batch of {setup.batch}")
    expect(inputs.device == CPU and targets.device == CPU, "the sampler must return CPU tensors")
    expect(inputs.is_floating_point() and bool(torch.isfinite(inputs).all()), "inputs are not finite floats")
    expect(all(torch.equal(a, b) for a, b in zip(first, again)), "the batch differs for the same generator seed")


def _relabelled(volume: Volume, generator: np.random.Generator) -> Volume:
    """``volume`` with other (random) labels and image classes: what a sampler that ignores labels cannot tell apart."""
    classes = volume.slice_classes
    return dataclasses.replace(
        volume,
        labels=generator.integers(0, 3, volume.labels.shape).astype(volume.labels.dtype),
        slice_classes=None if classes is None else generator.permutation(np.asarray(classes)),
    )


@_check("pretraining_view")
def check_pretraining_view(cls: type[DownstreamTask], setup: ContractSetup) -> None:
    """``input_view`` is an :class:`~ssl_medbench.datasets.views.InputView`; its unlabelled sampler gives inputs of the
    shape the task trains on, the same for the same seed, and never looks at labels (other labels, same batches)."""
    task, data = _task(cls, setup)
    view = task.input_view()
    expect(isinstance(view, InputView), f"input_view returned {view!r}, not an InputView")
    volumes = list(data.volumes)
    trained, _ = task.make_sampler(volumes).sample(setup.batch, torch.Generator().manual_seed(setup.seed))
    pretrained, _ = view.unlabelled_sampler(volumes).sample(setup.batch, torch.Generator().manual_seed(setup.seed))
    expect(
        pretrained.shape == trained.shape,
        f"view {view.name}: pretraining inputs {tuple(pretrained.shape)}, the task trains on {tuple(trained.shape)}",
    )
    expect(view.size in (None, trained.shape[-1]), f"view {view.name} for inputs of side {trained.shape[-1]}")
    relabelled = [_relabelled(volume, np.random.default_rng(setup.seed)) for volume in volumes]
    again, _ = view.unlabelled_sampler(relabelled).sample(setup.batch, torch.Generator().manual_seed(setup.seed))
    expect(torch.equal(pretrained, again), f"view {view.name}: the pretraining batches depend on the labels")


@_check("one_step_trains")
def check_one_step_trains(cls: type[DownstreamTask], setup: ContractSetup) -> None:
    """The loss has a finite ``"loss"`` entry whose gradient reaches every encoder parameter (finite, non-zero);
    after one Adam step the loss is still finite."""
    task, data = _task(cls, setup)
    model = _model(task, data, setup, "decoder" in task.accepts).train()
    inputs, targets = task.make_sampler(list(data.volumes)).sample(
        setup.batch, torch.Generator().manual_seed(setup.seed)
    )
    losses = task.loss(model(inputs), targets)
    expect("loss" in losses, f"loss must return a dict with a 'loss' entry, got {sorted(losses)}")
    loss = losses["loss"]
    expect(loss.ndim == 0 and bool(torch.isfinite(loss)), f"loss is {loss.detach()}")
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss.backward()
    for name, parameter in model.encoder.named_parameters():
        expect(parameter.grad is not None, f"no gradient reaches encoder parameter {name}")
        expect(bool(torch.isfinite(parameter.grad).all()), f"non-finite gradient in encoder parameter {name}")
        expect(bool(parameter.grad.abs().sum() > 0), f"zero gradient in encoder parameter {name}")
    optimiser.step()
    after = task.loss(model(inputs), targets)["loss"]
    expect(bool(torch.isfinite(after)), f"loss is {after.detach()} after one optimiser step")


@_check("evaluates_every_subject")
def check_evaluates_every_subject(cls: type[DownstreamTask], setup: ContractSetup) -> None:
    """``evaluate`` covers every example subject; ``subject_scores`` gives one row per subject with every
    per-subject metric; ``summarise`` gives every metric as a float; ``whole_set_scores`` gives whole-set metrics
    only, the primary endpoint among them if it is one; ``never_predicted`` gives a list of names."""
    task, data, table = _evaluated(cls, setup)
    subjects = sorted(volume.subject_id for volume in data.volumes)
    expect(
        isinstance(table, pd.DataFrame) and "subject_id" in table, "evaluate must return a DataFrame with subject_id"
    )
    expect(
        sorted(set(table["subject_id"])) == subjects,
        f"evaluated {sorted(set(table['subject_id']))}, expected {subjects}",
    )
    scores = _scores(cls, data, table)
    expect(
        sorted(scores["subject_id"]) == subjects,
        f"subject_scores rows {sorted(scores['subject_id'])}, expected {subjects}",
    )
    specs = cls.metric_specs(data.class_names)
    missing = [name for name, spec in specs.items() if spec.per_subject and name not in scores]
    expect(not missing, f"per-subject metrics missing from the evaluation: {missing}")
    summary = task.summarise(table)
    absent = [name for name in specs if not isinstance(summary.get(name), float)]
    expect(not absent, f"summarise gives no float for {absent}")
    whole_set = cls.whole_set_scores(table)
    per_subject = sorted(name for name in whole_set if name not in specs or specs[name].per_subject)
    expect(
        not per_subject, f"whole_set_scores gives metrics that are not whole-set metrics of metric_specs: {per_subject}"
    )
    primary = specs[cls.primary_metric]
    expect(
        primary.per_subject or isinstance(whole_set.get(cls.primary_metric), float),
        f"the primary endpoint {cls.primary_metric!r} is a whole-set metric that whole_set_scores does not give",
    )
    never = cls.never_predicted(table)
    expect(
        isinstance(never, list) and all(isinstance(name, str) for name in never),
        f"never_predicted must return a list of names, got {never!r}",
    )


def _expect_documented_values(
    cls: type[DownstreamTask], task: DownstreamTask, data: ExampleData, table: pd.DataFrame
) -> None:
    """Every metric of ``table`` (per subject and summarised) is finite, or NaN where its spec documents it."""
    scores, summary = _scores(cls, data, table), task.summarise(table)
    for name, spec in cls.metric_specs(data.class_names).items():
        values = [summary[name], *(scores[name] if spec.per_subject else [])]
        expect(not any(math.isinf(value) for value in values), f"metric {name!r} is infinite")
        undocumented = not spec.nan_when and any(math.isnan(value) for value in values)
        expect(not undocumented, f"metric {name!r} is NaN but documents no NaN case; give its documented worst case")


@_check("nan_only_where_documented")
def check_nan_only_where_documented(cls: type[DownstreamTask], setup: ContractSetup) -> None:
    """On the example data (which include an empty or missed case) every metric is finite, or NaN where its
    spec documents a NaN case (``MetricSpec.nan_when``); never infinite, never a silent NaN."""
    task, data, table = _evaluated(cls, setup)
    _expect_documented_values(cls, task, data, table)


def _noisy(volumes: Sequence[Volume], generator: np.random.Generator) -> list[Volume]:
    """``volumes`` with their images replaced by standard normal noise of the same shape and dtype."""
    return [
        dataclasses.replace(volume, images=generator.normal(size=volume.images.shape).astype(volume.images.dtype))
        for volume in volumes
    ]


@_check("image_blind_reference")
def check_image_blind_reference(cls: type[DownstreamTask], setup: ContractSetup) -> None:
    """``image_blind_scores`` (fitted on the example subjects, scored on them) gives ``evaluate``'s rows and columns,
    metrics NaN only where documented, and the same table when the test images, or the labelled subjects' images,
    are noise."""
    task, data, evaluated = _evaluated(cls, setup)
    volumes = list(data.volumes)
    table = task.image_blind_scores(volumes, volumes)
    expect(isinstance(table, pd.DataFrame), f"image_blind_scores returned {type(table).__name__}, not a DataFrame")
    expect(
        list(table.columns) == list(evaluated.columns),
        f"the reference's columns {list(table.columns)} differ from evaluate's {list(evaluated.columns)}",
    )
    expect(
        sorted(table["subject_id"]) == sorted(evaluated["subject_id"]),
        f"the reference scored rows {sorted(table['subject_id'])}, evaluate {sorted(evaluated['subject_id'])}",
    )
    _expect_documented_values(cls, task, data, table)
    noise = np.random.default_rng(setup.seed)
    expect(
        task.image_blind_scores(volumes, _noisy(volumes, noise)).equals(table),
        "the reference's scores depend on the test images (they changed when the images were replaced by noise)",
    )
    expect(
        task.image_blind_scores(_noisy(volumes, noise), volumes).equals(table),
        "the reference depends on the labelled subjects' images (its scores changed when they were replaced by noise)",
    )


def check_downstream_task(cls: type[DownstreamTask], setup: ContractSetup = ContractSetup()) -> None:
    """Run every check of :data:`DOWNSTREAM_CHECKS`; the first failure raises AssertionError."""
    expect(isinstance(cls, type) and issubclass(cls, DownstreamTask), f"{cls!r} is not a DownstreamTask subclass")
    for check in DOWNSTREAM_CHECKS.values():
        check(cls, setup)
