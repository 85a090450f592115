"""The grid: which initialisations, downstream tasks, label fractions and seeds to sweep, and how to train.

Presets live in ``benchmark/configs/<name>.yaml``; ``--grid FILE.yaml`` takes any file of the same
schema; ``--set a.b=value`` overrides one key (the value is read as YAML). Everything is checked
here, before any job runs: unknown keys, wrong types, fractions outside (0, 1], duplicates, unknown
plugin names and downstream tasks whose dataset the grid does not define.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from benchmark.runtime import RuntimeConfig
from ssl_medbench.core.config_parsing import parse_dataclass
from ssl_medbench.core.errors import ConfigError
from ssl_medbench.datasets import DATASETS
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.networks.encoder import EncoderConfig
from ssl_medbench.pretext_tasks import PRETEXT_TASKS


@dataclass(frozen=True)
class TrainConfig:
    """One training schedule (Adam); an epoch is ``steps_per_epoch`` optimiser steps."""

    epochs: int = 1
    steps_per_epoch: int = 50
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0


@dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    """Pretraining schedule plus the size of the unlabeled 2D patches the pretext tasks see."""

    patch_size: int = 64


@dataclass(frozen=True)
class GridConfig:
    name: str
    seeds: tuple[int, ...]
    fractions: tuple[float, ...]
    initialisations: tuple[str, ...]
    downstream_tasks: tuple[str, ...]
    #: dataset name in this grid -> {"type": registered dataset, other keys: its Config}
    datasets: dict[str, dict[str, Any]]
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    #: per initialisation name: its Config values
    pretext: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: per downstream task name: its Config values
    downstream: dict[str, dict[str, Any]] = field(default_factory=dict)

    def pretext_config(self, name: str) -> Any:
        plugin = PRETEXT_TASKS.get(name)
        return parse_dataclass(plugin.Config, self.pretext.get(name, {}), f"pretext.{name}")

    def pretext_config_for(self, name: str, dataset: str) -> Any:
        """The config of pretext task ``name`` as pretrained on ``dataset``: ``decoder: auto`` becomes "unet"
        if a downstream task on that dataset takes a decoder (segmentation), else "deconv" (Chen et al. 2019, Fig. 3)."""
        config = self.pretext_config(name)
        if getattr(config, "decoder", None) != "auto":
            return config
        tasks = [task for task in self.downstream_tasks if self.downstream_config(task).dataset == dataset]
        takes_decoder = any("decoder" in DOWNSTREAM_TASKS.get(task).accepts for task in tasks)
        return dataclasses.replace(config, decoder="unet" if takes_decoder else "deconv")

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
    """The raw mapping of a preset name or a YAML file path, and where it came from."""
    if grid.endswith((".yaml", ".yml")) or Path(grid).is_file():
        path = Path(grid)
        if not path.is_file():
            raise ConfigError(f"{path}: grid file does not exist")
        text, source = path.read_text(), str(path)
    else:
        if grid not in preset_names():
            raise ConfigError(f"unknown grid {grid!r}: expected a preset ({', '.join(preset_names())}) or a .yaml file")
        text, source = resources.files("benchmark.configs").joinpath(f"{grid}.yaml").read_text(), f"preset {grid}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    return data, source


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (value parsed as YAML) to a copy of ``data``."""
    data = copy.deepcopy(data)
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {override!r}: expected key=value, e.g. pretrain.epochs=2")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {override!r}: value is not valid YAML: {error}") from None
        node = data
        parts = key.split(".")
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
    try:
        config = parse_dataclass(GridConfig, data, "")
        validate_grid(config)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return config


def _check_list(name: str, values: tuple) -> None:
    if not values:
        raise ConfigError(f"{name}: must not be empty")
    duplicates = sorted({str(v) for v in values if values.count(v) > 1})
    if duplicates:
        raise ConfigError(f"{name}: duplicate entries {', '.join(duplicates)}")


def validate_grid(config: GridConfig) -> None:
    """Semantic checks that the types alone do not catch; raises ConfigError or UnknownPluginError."""
    for name in ("seeds", "fractions", "initialisations", "downstream_tasks"):
        _check_list(name, getattr(config, name))
    for fraction in config.fractions:
        if not 0 < fraction <= 1:
            raise ConfigError(f"fractions: {fraction} is outside (0, 1]")
    for name, entry in config.datasets.items():
        if "type" not in entry:
            raise ConfigError(f"datasets.{name}: missing 'type' (one of: {', '.join(DATASETS.names())})")
        DATASETS.get(entry["type"])
        config.dataset_config(name)
    for name in config.initialisations:
        try:
            initialisation = PRETEXT_TASKS.get(name)(config.pretext_config(name))
        except ValueError as error:
            raise ConfigError(f"pretext.{name}: {error}") from None
        try:
            initialisation.check_image_size(config.pretrain.patch_size, config.pretrain.patch_size)
        except ValueError as error:
            raise ConfigError(
                f"pretext.{name}: {error} (pretrain.patch_size is {config.pretrain.patch_size})"
            ) from None
        if initialisation.finetune_augmentation() is not None:
            for task in config.downstream_tasks:
                if DOWNSTREAM_TASKS.get(task).target_geometry is None:
                    raise ConfigError(
                        f"initialisations: {name} augments training batches, but downstream task {task!r} "
                        "does not declare how its targets follow a geometric transform (target_geometry)"
                    )
    for name in config.pretext:
        PRETEXT_TASKS.get(name)
    for name in config.downstream_tasks:
        downstream = config.downstream_config(name)
        if downstream.dataset not in config.datasets:
            raise ConfigError(
                f"downstream.{name}.dataset: {downstream.dataset!r} is not defined under datasets "
                f"(defined: {', '.join(config.datasets) or 'none'})"
            )
    for name in config.downstream:
        DOWNSTREAM_TASKS.get(name)
    for section in ("pretrain", "finetune"):
        schedule = getattr(config, section)
        for key in ("epochs", "steps_per_epoch", "batch_size"):
            if getattr(schedule, key) < 1:
                raise ConfigError(f"{section}.{key}: must be >= 1, got {getattr(schedule, key)}")
        if schedule.learning_rate <= 0:
            raise ConfigError(f"{section}.learning_rate: must be > 0, got {schedule.learning_rate}")
    try:
        config.runtime.check()
    except ValueError as error:
        raise ConfigError(f"runtime.{error}") from None
