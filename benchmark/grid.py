"""The grid: which initialisations, downstream tasks, label budgets, evaluation protocols and seeds to sweep, and how
to train.

Presets live in ``benchmark/configs/<name>.yaml``; ``--grid FILE.yaml`` takes any file of the same
schema; ``--set a.b=value`` overrides one key (the value is read as YAML). Both are read as strict
YAML (:mod:`ssl_medbench.core.strict_yaml`: no duplicate keys, anchors, aliases or unusual tags).
Everything is checked here, before any job runs: unknown keys, wrong types, non-finite numbers,
values outside their range, fractions outside (0, 1], duplicates, names that would be unsafe as
file or folder names, unknown plugin names and downstream tasks whose dataset the grid does not
define. :mod:`benchmark.preflight` then builds and runs the grid's networks once on their sizes.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from benchmark.runtime import RuntimeConfig
from ssl_medbench.core.config_fields import declared_range, is_path, user_path
from ssl_medbench.core.config_parsing import parse_dataclass
from ssl_medbench.core.errors import ConfigError
from ssl_medbench.core.run_tags import PROTOCOLS, Protocol
from ssl_medbench.core.strict_yaml import load_strict, read_text_file
from ssl_medbench.datasets import DATASETS
from ssl_medbench.datasets.splits import LabelBudget
from ssl_medbench.datasets.views import InputView
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.downstream.base import DownstreamTask
from ssl_medbench.networks.encoder import EncoderConfig, create_encoder, spatial_dims_of
from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import Initialisation


@dataclass(frozen=True)
class TrainConfig:
    """One training schedule (Adam); an epoch is ``steps_per_epoch`` optimiser steps.

    The learning rate rises linearly to ``learning_rate`` over the first ``warmup_fraction`` of the steps (Goyal et
    al. 2017, "Accurate, large minibatch SGD"), then stays there (``"constant"``) or follows a half cosine down to 0
    at the last step (``"cosine"``; Loshchilov & Hutter 2017, "SGDR"): :func:`benchmark.learning_rates.learning_rate_at`.
    A fraction, not a step count, so a task's longer schedule (``finetune_by_task``) keeps its share of warm-up.
    """

    epochs: int = 1
    steps_per_epoch: int = 50
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    learning_rate_schedule: str = "constant"
    warmup_fraction: float = 0.0

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def warmup_steps(self) -> int:
        return round(self.warmup_fraction * self.total_steps)


@dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    """Pretraining schedule. What the pretext tasks see is each downstream task's view (``DownstreamTask.input_view``:
    its patch, slice or image size), not a setting of its own."""


FINETUNE, FROZEN, KNN = Protocol.FINETUNE, Protocol.FROZEN, Protocol.KNN


@dataclass(frozen=True)
class KnnConfig:
    """The ``knn`` protocol: ``neighbours`` nearest labelled images by cosine similarity of pooled encoder features,
    majority vote.

    5, scikit-learn's default, not the 20 or 200 of the SSL literature (Caron et al. 2021; Wu et al. 2018), which
    assume ImageNet's thousand labelled images per class: with a few labelled subjects, k at or above the number of
    labelled images makes every vote the labelled majority class whatever the encoder (measured on the smoke grid:
    k = 20 with 12 labelled images gave every initialisation the same F1). With fewer labelled images than k, a vote
    takes them all, and the report says so."""

    neighbours: int = 5


@dataclass(frozen=True)
class GridConfig:
    name: str
    seeds: tuple[int, ...]
    initialisations: tuple[str, ...]
    downstream_tasks: tuple[str, ...]
    #: dataset name in this grid -> {"type": registered dataset, other keys: its Config}
    datasets: dict[str, dict[str, Any]]
    #: Label budgets as fractions of the training subjects (may be empty if ``label_subjects`` is not).
    fractions: tuple[float, ...] = ()
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    #: per initialisation name: its Config values
    pretext: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: per grid dataset, per initialisation: Config values that replace ``pretext``'s when pretraining on that dataset
    #: (e.g. a context-restoration patch size fitted to the dataset's view)
    pretext_by_dataset: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: per downstream task name: its Config values
    downstream: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: per downstream task name: ``finetune`` values that replace the grid's for that task's cells (a task that needs
    #: more steps to converge, e.g. organ localisation)
    finetune_by_task: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Label budgets as numbers of training subjects, beside ``fractions`` ("10 labelled cases").
    label_subjects: tuple[int, ...] = ()
    #: Evaluation protocols of every downstream task (:class:`~ssl_medbench.core.run_tags.Protocol`).
    protocols: tuple[str, ...] = ("finetune",)
    #: per downstream task name: its protocols instead of ``protocols`` (e.g. ``knn`` for a classification task only)
    protocols_by_task: dict[str, tuple[str, ...]] = field(default_factory=dict)
    knn: KnnConfig = field(default_factory=KnnConfig)
    #: 2: networks on images (Chen et al. 2019); 3: on volumes (3D encoders, cube views, sliding-window inference).
    spatial_dims: int = 2

    @property
    def label_budgets(self) -> tuple[LabelBudget, ...]:
        """Every label budget of the grid: ``fractions`` then ``label_subjects``, in the order given."""
        fractions = tuple(LabelBudget.of_fraction(f) for f in self.fractions)
        return fractions + tuple(LabelBudget.of_subjects(n) for n in self.label_subjects)

    def protocols_for(self, task: str) -> tuple[str, ...]:
        """The evaluation protocols of downstream task ``task``: ``protocols_by_task.<task>``, else ``protocols``."""
        return tuple(self.protocols_by_task.get(task, self.protocols))

    def finetune_for(self, task: str) -> TrainConfig:
        """The finetune schedule of downstream task ``task``: ``finetune`` with ``finetune_by_task.<task>`` over it."""
        values = {**dataclasses.asdict(self.finetune), **self.finetune_by_task.get(task, {})}
        return parse_dataclass(TrainConfig, values, f"finetune_by_task.{task}")

    def pretext_config(self, name: str) -> Any:
        plugin = PRETEXT_TASKS.get(name)
        return parse_dataclass(plugin.Config, self.pretext.get(name, {}), f"pretext.{name}")

    def initialisation(self, name: str, dataset: str | None = None, view: InputView | None = None) -> Initialisation:
        """Initialisation ``name`` in the grid's ``spatial_dims`` form, with its config (as pretrained on ``dataset``
        for the downstream tasks of ``view``, when a dataset is given: :meth:`pretext_config_for`)."""
        config = self.pretext_config(name) if dataset is None else self.pretext_config_for(name, dataset, view)
        return PRETEXT_TASKS.get(name).build(config, self.spatial_dims)

    def downstream_task(self, name: str, channels: int, class_names: tuple[str, ...] = ()) -> DownstreamTask:
        """Downstream task ``name`` in the grid's ``spatial_dims`` form, with its config, for a dataset of ``channels``
        image channels and ``class_names``."""
        return DOWNSTREAM_TASKS.get(name).build(self.downstream_config(name), channels, class_names, self.spatial_dims)

    def input_shape(self, batch: int, channels: int, side: int) -> tuple[int, ...]:
        """A batch of ``batch`` square images (cubes when ``spatial_dims`` is 3) of ``side`` with ``channels``."""
        return (batch, channels, *(side,) * self.spatial_dims)

    def pretrains(self, name: str) -> bool:
        """Whether initialisation ``name`` is a pretext task, with pretrain jobs of its own (not a baseline)."""
        return PRETEXT_TASKS.get(name)(self.pretext_config(name)).requires_pretraining

    def pretext_config_for(self, name: str, dataset: str, view: InputView | None = None) -> Any:
        """The config of pretext task ``name`` as pretrained on ``dataset`` (for the downstream tasks of ``view``, or all
        of the dataset's): ``pretext.<name>`` with ``pretext_by_dataset.<dataset>.<name>`` over it; ``decoder: auto``
        becomes "unet" if one of those downstream tasks takes a decoder (segmentation), else "deconv" (Chen et al.
        2019, Fig. 3)."""
        plugin = PRETEXT_TASKS.get(name)
        values = {**self.pretext.get(name, {}), **self.pretext_by_dataset.get(dataset, {}).get(name, {})}
        config = parse_dataclass(plugin.Config, values, f"pretext_by_dataset.{dataset}.{name}")
        if getattr(config, "decoder", None) != "auto":
            return config
        tasks = [
            task
            for task in self.downstream_tasks
            if self.downstream_config(task).dataset == dataset and (view is None or self.input_view(task) == view)
        ]
        takes_decoder = any("decoder" in DOWNSTREAM_TASKS.get(task).accepts for task in tasks)
        return dataclasses.replace(config, decoder="unet" if takes_decoder else "deconv")

    def input_view(self, task: str) -> InputView:
        """What downstream task ``task``'s network takes, and so what its pretraining samples."""
        config = self.downstream_config(task)
        channels = len(DATASETS.get(self.dataset_type(config.dataset)).channels)
        return self.downstream_task(task, channels).input_view()

    def downstream_config(self, name: str) -> Any:
        plugin = DOWNSTREAM_TASKS.get(name)
        return parse_dataclass(plugin.Config, self.downstream.get(name, {}), f"downstream.{name}")

    def dataset_type(self, name: str) -> str:
        return self.datasets[name]["type"]

    def dataset_config(self, name: str) -> Any:
        entry = {k: v for k, v in self.datasets[name].items() if k != "type"}
        return parse_dataclass(DATASETS.get(self.dataset_type(name)).Config, entry, f"datasets.{name}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def preset_names() -> list[str]:
    return sorted(
        p.name[: -len(".yaml")] for p in resources.files("benchmark.configs").iterdir() if p.name.endswith(".yaml")
    )


def read_grid_file(grid: str) -> tuple[dict[str, Any], str]:
    """The raw mapping of a preset name or a YAML file path, and where it came from (strict YAML, see core.strict_yaml)."""
    path = Path(grid)
    if grid.endswith((".yaml", ".yml")) or path.is_file() or (grid not in preset_names() and path.exists()):
        text, source = read_text_file(path, "grid file"), str(path)
    else:
        if grid not in preset_names():
            raise ConfigError(f"unknown grid {grid!r}: expected a preset ({', '.join(preset_names())}) or a .yaml file")
        text, source = resources.files("benchmark.configs").joinpath(f"{grid}.yaml").read_text(), f"preset {grid}"
    data = load_strict(text, source)
    if not isinstance(data, dict):
        got = "an empty document" if data is None else f"{type(data).__name__} {data!r}"[:80]
        raise ConfigError(f"{source}: expected a mapping of grid keys at the top level, got {got}")
    return data, source


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (value parsed as strict YAML) to a copy of ``data``."""
    data = copy.deepcopy(data)
    for override in overrides:
        key, sep, text = override.partition("=")
        parts = key.split(".")
        if not sep or not all(part.strip() for part in parts):
            raise ConfigError(f"--set {override!r}: expected key=value, e.g. pretrain.epochs=2")
        value = load_strict(text, f"--set {override!r}")
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {override!r}: {part!r} is not a mapping")
            node = child
        node[parts[-1]] = value
    return data


def load_grid(grid: str, overrides: list[str] | None = None) -> GridConfig:
    data, source = read_grid_file(grid)
    data = apply_overrides(data, overrides or [])
    if isinstance(data.get("pretrain"), dict) and "patch_size" in data["pretrain"]:
        raise ConfigError(
            f"{source}: pretrain.patch_size: no longer a setting; pretraining samples what each downstream task's "
            "network takes (downstream.<task>.patch_size or slice_size, or the dataset's image_size): remove it"
        )
    try:
        config = parse_dataclass(GridConfig, data, "")
        validate_grid(config)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return config


#: (smallest, largest) sensible value of each schedule key; a bound keeps a typo from asking for years of compute.
SCHEDULE_BOUNDS = {
    "epochs": (1, 100_000),
    "steps_per_epoch": (1, 10_000_000),
    "batch_size": (1, 4096),
}
#: Learning-rate schedules after the warm-up (TrainConfig's docstring).
LEARNING_RATE_SCHEDULES = ("constant", "cosine")
#: Largest learning rate and weight decay accepted (Adam diverges long before).
MAX_LEARNING_RATE = 10.0
MAX_WEIGHT_DECAY = 1.0
#: Seeds feed numpy's and torch's generators: non-negative 32-bit integers.
MAX_SEED = 2**32 - 1
MAX_LOADER_WORKERS = 256
#: Largest integer setting of a plugin (a count, a size, an iteration number) accepted.
MAX_PLUGIN_INT = 1_000_000
#: A name that becomes a file or folder name: one safe path component.
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


def check_path_name(value: str, key: str) -> None:
    """Raise ConfigError unless ``value`` is one safe path component (it becomes a file or folder name)."""
    if not SAFE_NAME.fullmatch(value):
        raise ConfigError(
            f"{key}: {value[:80]!r} is not a safe name: expected 1 to 64 letters, digits, '-', '_' or '.', "
            "not starting with '.' or '-'"
        )


def _check_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key}: must be >= {low} and <= {high}, got {value}")


def _check_list(name: str, values: tuple) -> None:
    if not values:
        raise ConfigError(f"{name}: must not be empty")
    duplicates = sorted({str(v) for v in values if values.count(v) > 1})
    if duplicates:
        raise ConfigError(f"{name}: duplicate entries {', '.join(duplicates)}")


def check_plugin_config(config: Any, where: str) -> None:
    """Every field of a plugin ``Config`` within what it accepts. A field declared with
    :func:`~ssl_medbench.core.config_fields.bounded` or :func:`~ssl_medbench.core.config_fields.folder_path` is
    checked against its declaration; the others follow conventions by field name: integers lie in [0, 10**6]
    (``*_batch`` >= 1, ``*seed`` up to 2**32 - 1), ``*_fraction`` in [0, 1], ``*_weight`` and ``*_mm`` are >= 0
    (voxel sizes and spacings > 0)."""
    for item in dataclasses.fields(config):
        value, key = getattr(config, item.name), f"{where}.{item.name}"
        declared = declared_range(item)
        if is_path(item) and value:
            user_path(value, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if declared is not None:
            declared.check(value, key)
        elif isinstance(value, int):
            low = 1 if item.name.endswith("_batch") else 0
            _check_range(key, value, low, MAX_SEED if item.name.endswith("seed") else MAX_PLUGIN_INT)
        elif item.name.endswith("_fraction"):
            _check_range(key, value, 0.0, 1.0)
        elif item.name.endswith("_mm") and ("spacing" in item.name or "voxel" in item.name) and value <= 0:
            raise ConfigError(f"{key}: must be > 0, got {value}")
        elif item.name.endswith(("_weight", "_mm")) and value < 0:
            raise ConfigError(f"{key}: must be >= 0, got {value}")


def _check_lists(config: GridConfig) -> None:
    for name in ("seeds", "initialisations", "downstream_tasks", "protocols"):
        _check_list(name, getattr(config, name))
    if not config.fractions and not config.label_subjects:
        raise ConfigError(
            "fractions, label_subjects: no label budget: give at least one label fraction or subject count"
        )
    for name in ("fractions", "label_subjects"):
        if getattr(config, name):
            _check_list(name, getattr(config, name))
    for fraction in config.fractions:
        if not 0 < fraction <= 1:
            raise ConfigError(f"fractions: {fraction} is outside (0, 1]")
    for count in config.label_subjects:
        _check_range("label_subjects", count, 1, MAX_PLUGIN_INT)
    for index, seed in enumerate(config.seeds):
        _check_range(f"seeds[{index}]", seed, 0, MAX_SEED)


def _check_protocols(config: GridConfig) -> None:
    for task in config.protocols_by_task:
        if task not in config.downstream_tasks:
            raise ConfigError(
                f"protocols_by_task.{task}: not one of this grid's downstream tasks ({', '.join(config.downstream_tasks)})"
            )
        _check_list(f"protocols_by_task.{task}", config.protocols_by_task[task])
    _check_range("knn.neighbours", config.knn.neighbours, 1, MAX_PLUGIN_INT)
    for task in config.downstream_tasks:
        key = f"protocols_by_task.{task}" if task in config.protocols_by_task else "protocols"
        classifies = DOWNSTREAM_TASKS.get(task).classifies_images
        for protocol in config.protocols_for(task):
            if protocol not in PROTOCOLS:
                raise ConfigError(f"{key}: unknown protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
            if protocol == KNN and not classifies:
                raise ConfigError(
                    f"{key}: knn classifies images by their nearest labelled images, but {task} does not predict one "
                    "class per image; give knn to classification tasks only, under protocols_by_task.<task>"
                )
        if FROZEN in config.protocols_for(task) and classifies and config.finetune_for(task).batch_size < 2:
            schedule = (
                f"finetune_by_task.{task}" if "batch_size" in config.finetune_by_task.get(task, {}) else "finetune"
            )
            raise ConfigError(
                f"{schedule}.batch_size: the frozen protocol's linear probe of {task} normalises its features over the "
                "batch (batch norm), which needs at least 2 images per batch"
            )


def _check_datasets(config: GridConfig) -> None:
    for name, entry in config.datasets.items():
        check_path_name(name, "datasets")
        if "type" not in entry:
            raise ConfigError(f"datasets.{name}: missing 'type' (one of: {', '.join(DATASETS.names())})")
        if not isinstance(entry["type"], str):
            raise ConfigError(f"datasets.{name}.type: expected a string, got {type(entry['type']).__name__}")
        DATASETS.get(entry["type"])
        check_plugin_config(config.dataset_config(name), f"datasets.{name}")


def _check_spatial_dims(config: GridConfig) -> None:
    """``spatial_dims`` is 2 or 3, every initialisation and downstream task has that form, and so has the encoder."""
    dims = config.spatial_dims
    if isinstance(dims, bool) or dims not in (2, 3):
        raise ConfigError(f"spatial_dims: expected 2 (images) or 3 (volumes), got {dims!r}")
    for key, names, registry in (
        ("initialisations", config.initialisations, PRETEXT_TASKS),
        ("downstream_tasks", config.downstream_tasks, DOWNSTREAM_TASKS),
    ):
        for name in names:
            supported = registry.get(name).spatial_dims_supported
            if dims not in supported:
                forms = " and ".join(f"{d}D" for d in supported)
                raise ConfigError(
                    f"{key}: {name} has no {dims}D form (it works in {forms}); remove it or set spatial_dims: "
                    f"{supported[0]}"
                )
    try:
        encoder = create_encoder(config.encoder, 1)
    except Exception:  # noqa: BLE001  (an encoder that cannot be built is reported by the preflight, with its cause)
        return
    try:
        encoder_dims = spatial_dims_of(encoder)
    except ValueError as error:
        raise ConfigError(f"encoder.name: {error}") from None
    if encoder_dims != dims:
        other = "chen_vgg3d" if dims == 3 else "chen_vgg"
        raise ConfigError(
            f"encoder.name: {config.encoder.name} is a {encoder_dims}D network, but spatial_dims is {dims}: use a "
            f"{dims}D encoder (e.g. {other}) or set spatial_dims: {encoder_dims}"
        )


def _check_initialisations(config: GridConfig) -> None:
    for name in config.initialisations:
        try:
            initialisation = config.initialisation(name)
        except ValueError as error:
            raise ConfigError(f"pretext.{name}: {error}") from None
        check_plugin_config(initialisation.config, f"pretext.{name}")
        if initialisation.finetune_augmentation() is not None:
            for task in config.downstream_tasks:
                if DOWNSTREAM_TASKS.get(task).target_geometry is None:
                    raise ConfigError(
                        f"initialisations: {name} augments training batches, but downstream task {task!r} "
                        "does not declare how its targets follow a geometric transform (target_geometry)"
                    )
    for name in config.pretext:
        PRETEXT_TASKS.get(name)


def _check_pretext_by_dataset(config: GridConfig) -> None:
    for dataset, settings in config.pretext_by_dataset.items():
        if dataset not in config.datasets:
            raise ConfigError(
                f"pretext_by_dataset.{dataset}: not a dataset of this grid (defined: {', '.join(config.datasets)})"
            )
        for name in settings:
            key = f"pretext_by_dataset.{dataset}.{name}"
            if name not in config.initialisations:
                raise ConfigError(f"{key}: {name!r} is not one of this grid's initialisations")
            if not config.pretrains(name):
                raise ConfigError(
                    f"{key}: {name} does not pretrain, so it has no per-dataset settings; set them under pretext.{name}"
                )
            try:
                initialisation = config.initialisation(name, dataset)
            except ValueError as error:
                raise ConfigError(f"{key}: {error}") from None
            check_plugin_config(initialisation.config, key)


def _check_downstream(config: GridConfig) -> None:
    for name in config.downstream_tasks:
        downstream = config.downstream_config(name)
        if downstream.dataset not in config.datasets:
            raise ConfigError(
                f"downstream.{name}.dataset: {downstream.dataset!r} is not defined under datasets "
                f"(defined: {', '.join(config.datasets) or 'none'})"
            )
        check_plugin_config(downstream, f"downstream.{name}")
        channels = len(DATASETS.get(config.dataset_type(downstream.dataset)).channels)
        try:
            config.downstream_task(name, channels)
        except ValueError as error:
            raise ConfigError(f"downstream.{name}: {error}") from None
    for name in config.downstream:
        DOWNSTREAM_TASKS.get(name)


def _check_schedules(config: GridConfig) -> None:
    for task in config.finetune_by_task:
        if task not in config.downstream_tasks:
            raise ConfigError(
                f"finetune_by_task.{task}: not one of this grid's downstream tasks ({', '.join(config.downstream_tasks)})"
            )
    schedules = {"pretrain": config.pretrain, "finetune": config.finetune}
    schedules |= {f"finetune_by_task.{task}": config.finetune_for(task) for task in config.finetune_by_task}
    for section, schedule in schedules.items():
        for key, (low, high) in SCHEDULE_BOUNDS.items():
            if hasattr(schedule, key):
                _check_range(f"{section}.{key}", getattr(schedule, key), low, high)
        if not 0 < schedule.learning_rate <= MAX_LEARNING_RATE:
            raise ConfigError(
                f"{section}.learning_rate: must be > 0 and <= {MAX_LEARNING_RATE}, got {schedule.learning_rate}"
            )
        _check_range(f"{section}.weight_decay", schedule.weight_decay, 0.0, MAX_WEIGHT_DECAY)
        if schedule.learning_rate_schedule not in LEARNING_RATE_SCHEDULES:
            raise ConfigError(
                f"{section}.learning_rate_schedule: must be one of {', '.join(LEARNING_RATE_SCHEDULES)}, "
                f"got {schedule.learning_rate_schedule!r}"
            )
        if not 0 <= schedule.warmup_fraction < 1:
            raise ConfigError(f"{section}.warmup_fraction: must be >= 0 and < 1, got {schedule.warmup_fraction}")
    try:
        config.runtime.check()
    except ValueError as error:
        raise ConfigError(f"runtime.{error}") from None
    _check_range("runtime.loader_workers", config.runtime.loader_workers, 0, MAX_LOADER_WORKERS)


def validate_grid(config: GridConfig) -> None:
    """Semantic checks that the types alone do not catch; raises ConfigError or UnknownPluginError."""
    check_path_name(config.name, "name")
    _check_lists(config)
    _check_datasets(config)
    _check_spatial_dims(config)
    _check_initialisations(config)
    _check_downstream(config)
    _check_protocols(config)
    _check_pretext_by_dataset(config)
    _check_schedules(config)
