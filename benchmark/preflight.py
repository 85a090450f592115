"""Before the first job: build every network the grid trains and run it once on the configured sizes.

A grid whose encoder cannot be built, or whose networks do not fit the configured patch or image
sizes (a side the encoder's strides do not divide, a crop smaller than the deepest stride), would
otherwise fail inside every job, recorded as FAILED runs. Here it is one ConfigError naming the key.
The pretext networks run on zero batches of the shapes their task declares (``batch_spec``, never
``make_batch``, so no task code with side effects runs) and their loss is computed; the downstream
networks run on zero images of the side they are trained on. First of all, a view too large for the device's memory
(a 256-voxel cube on a laptop) is refused by an estimate (:func:`training_bytes`) instead of being found by the
out-of-memory killer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TypeVar

import torch
from torch import nn

from benchmark.grid import FROZEN, GridConfig
from ssl_medbench.core.errors import ConfigError, UserError
from ssl_medbench.datasets.base import Dataset
from ssl_medbench.networks.encoder import create_encoder
from ssl_medbench.pretext_tasks.base import ENCODER, PretextNetwork, PretextTask

#: Examples per checked batch (two: a batch dimension that a squeeze drops by mistake shows up).
BATCH = 2
#: Class names assumed where a dataset knows its classes only once its files are read (MedMNIST).
PLACEHOLDER_CLASSES = ("class_0", "class_1")
#: float32 activations a U-Net keeps per feature-map element of each encoder stage for one training step: two conv
#: units (convolution and batch-norm outputs) and the pooling in the encoder, the up-convolution, concatenation and two
#: units in the decoder, and as much again for their gradients in the backward pass.
ACTIVATIONS_PER_ELEMENT = 24
T = TypeVar("T")


def check_networks(grid: GridConfig, datasets: dict[str, Dataset], device: torch.device | None = None) -> None:
    """Raise ConfigError naming the key if a network of ``grid`` cannot be built or run on its configured sizes: every
    pretext network on the view of every downstream task it pretrains for, and every downstream network; with a
    ``device``, also if one training step would need more memory than it has. Views whose size the data decide
    (native images) are checked by :func:`check_native_views` once the data are prepared."""
    if device is not None:
        for name in grid.downstream_tasks:
            _check_memory(grid, name, len(datasets[grid.downstream_config(name).dataset].channels), device)
    with torch.no_grad():
        _check_pretext_views(grid, datasets, lambda downstream: downstream_side(grid, downstream))
        for name in grid.downstream_tasks:
            _check_downstream(grid, name, datasets[grid.downstream_config(name).dataset])


def check_native_views(grid: GridConfig, datasets: dict[str, Dataset]) -> None:
    """After data preparation: the pretext networks on the views whose size no grid key sets (the dataset's own
    images, e.g. MedMNIST at its native size), measured on one training image of the dataset."""

    def measured(downstream: str) -> tuple[str, int | None]:
        key, side = downstream_side(grid, downstream)
        if side is not None:
            return key, None  # checked before any data was read
        data = datasets[grid.downstream_config(downstream).dataset]
        volume = data.load(data.split().train[0])
        images, _ = grid.input_view(downstream).unlabelled_sampler([volume]).sample(1, torch.Generator())
        return f"{key} (the images' own size)", min(images.shape[-2:])

    with torch.no_grad():
        _check_pretext_views(grid, datasets, measured)


def _check_pretext_views(
    grid: GridConfig, datasets: dict[str, Dataset], side_of: Callable[[str], tuple[str, int | None]]
) -> None:
    """Each pretext network on the side ``side_of(downstream task)`` gives (key, side) for the view it pretrains on;
    None: not checked here."""
    checked: set[tuple] = set()
    for downstream in grid.downstream_tasks:
        dataset = grid.downstream_config(downstream).dataset
        channels = len(datasets[dataset].channels)
        key, side = side_of(downstream)
        if side is None:
            continue
        view = grid.input_view(downstream)
        for name in grid.initialisations:
            task = grid.initialisation(name, dataset, view)
            if isinstance(task, PretextTask) and (name, task.config, channels, side) not in checked:
                checked.add((name, task.config, channels, side))
                _check_pretext(grid, name, task, channels, (key, side))


def _attempt(action: Callable[[], T], blame: Callable[[Exception], ConfigError]) -> T:
    """``action()``; any exception but a UserError (already one clear line) becomes the ConfigError ``blame`` makes."""
    try:
        return action()
    except UserError:
        raise
    except Exception as error:
        raise blame(error) from None


def _encoder(grid: GridConfig, channels: int) -> nn.Module:
    return _attempt(
        lambda: create_encoder(grid.encoder, channels).eval(),
        lambda error: ConfigError(
            f"encoder: {grid.encoder.name} cannot be built with kwargs {grid.encoder.kwargs}: {_describe(error)}"
        ),
    )


def _cannot_build(key: str, grid: GridConfig, error: Exception) -> ConfigError:
    return ConfigError(
        f"{key}: its network cannot be built on encoder {grid.encoder.name} with kwargs {grid.encoder.kwargs}: "
        f"{_describe(error)}"
    )


def _does_not_fit(
    key: str, side: int, name: str, grid: GridConfig, encoder: nn.Module, error: Exception
) -> ConfigError:
    """``<key>: <side> does not fit the <name> network (encoder E[, total stride S: use a multiple of S]): <error>``."""
    stride = encoder.feature_info.reduction()[-1]
    hint = "" if side % stride == 0 else f", total stride {stride}: use a multiple of {stride}"
    return ConfigError(
        f"{key}: {side} does not fit the {name} network (encoder {grid.encoder.name}{hint}): {_describe(error)}"
    )


def _check_pretext(grid: GridConfig, name: str, task: PretextTask, channels: int, view: tuple[str, int]) -> None:
    """Pretext task ``name`` on inputs of the side that the grid key ``view[0]`` sets to ``view[1]``."""
    key, side = view
    try:
        task.check_image_size(side, side)
    except ValueError as error:
        raise ConfigError(f"pretext.{name}: {error} (pretraining on the view {key} = {side} sets)") from None
    encoder = _encoder(grid, channels)
    network = _attempt(
        lambda: PretextNetwork.for_task(task, encoder, channels).eval(),
        lambda error: _cannot_build(f"pretext.{name}", grid, error),
    )

    spec = task.batch_spec(grid.input_shape(BATCH, channels, side))
    crop = spec.inputs.shape[-1]

    def forward_and_loss() -> None:
        inputs = torch.zeros(spec.inputs.shape, dtype=spec.inputs.dtype)
        task.loss(network(inputs), torch.zeros(spec.targets.shape, dtype=spec.targets.dtype))

    def blame(error: Exception) -> ConfigError:
        if crop >= side:
            return _does_not_fit(key, side, name, grid, encoder, error)
        return ConfigError(  # the task's own crops of the view are what the encoder cannot take
            f"pretext.{name}: its {crop}-pixel crops of the view {key} = {side} do not fit the network (encoder "
            f"{grid.encoder.name}, total stride {encoder.feature_info.reduction()[-1]}): {_describe(error)}; enlarge "
            "the task's patch fraction or the view"
        )

    _attempt(forward_and_loss, blame)


def _check_downstream(grid: GridConfig, name: str, dataset: Dataset) -> None:
    key, side = downstream_side(grid, name)
    if side is None:
        return
    channels = len(dataset.channels)
    encoder = _encoder(grid, channels)
    classes = dataset.class_names or PLACEHOLDER_CLASSES
    task = grid.downstream_task(name, channels, classes)
    builders = {"build_model": task.build_model}
    if FROZEN in grid.protocols_for(name):
        builders["build_frozen_model"] = task.build_frozen_model
    for builder_name, build in builders.items():
        model = _attempt(
            lambda build=build: build(encoder, None).eval(),
            lambda error: _cannot_build(f"downstream.{name}", grid, error),
        )
        if builder_name == "build_frozen_model":
            _check_freezable(name, type(task).__name__, model)
        outputs = _attempt(
            lambda model=model: model(torch.zeros(grid.input_shape(BATCH, channels, side))),
            lambda error: _does_not_fit(key, side, name, grid, encoder, error),
        )
        if outputs.shape[0] != BATCH:
            raise ConfigError(f"downstream.{name}: {BATCH} images gave outputs of shape {tuple(outputs.shape)}")


def training_bytes(encoder: nn.Module, side: int, spatial_dims: int, batch: int) -> int:
    """About how many bytes of activations one training step of a U-Net on ``encoder`` takes for ``batch`` inputs of
    ``side`` per axis: :data:`ACTIVATIONS_PER_ELEMENT` float32 values per element of each stage's feature map."""
    elements = sum(
        width * max(side // reduction, 1) ** spatial_dims
        for width, reduction in zip(encoder.feature_info.channels(), encoder.feature_info.reduction())
    )
    return ACTIVATIONS_PER_ELEMENT * 4 * batch * elements


def available_bytes(device: torch.device) -> int | None:
    """Memory a job can use on ``device``: a GPU's total memory, or this machine's available memory (Linux
    ``MemAvailable``); None where it cannot be read."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _check_memory(grid: GridConfig, name: str, channels: int, device: torch.device) -> None:
    """ConfigError naming the view's key if one training step on downstream task ``name``'s view, at the larger of the
    pretraining and finetuning batch sizes, would need more memory than ``device`` has."""
    key, side = downstream_side(grid, name)
    available = available_bytes(device)
    if side is None or available is None:
        return
    batch = max(grid.pretrain.batch_size, grid.finetune_for(name).batch_size)
    needed = training_bytes(_encoder(grid, channels), side, grid.spatial_dims, batch)
    if needed > available:
        shape = "x".join([str(side)] * grid.spatial_dims)
        raise ConfigError(
            f"{key}: one training step on {shape} inputs at batch {batch} needs about {needed / 2**30:.1f} GiB of "
            f"activations, more than the {available / 2**30:.1f} GiB {device.type} has; use a smaller patch or batch"
        )


def _check_freezable(name: str, task: str, model: nn.Module) -> None:
    """ConfigError unless the frozen protocol's network has an ``encoder`` to freeze and parameters besides it."""
    encoder = getattr(model, ENCODER, None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError(
            f"protocols: frozen needs the encoder of {name}'s network as its 'encoder' attribute, to freeze it; "
            f"{task}.build_frozen_model gave a {type(model).__name__} without one"
        )
    frozen = {id(parameter) for parameter in encoder.parameters()}
    if all(id(parameter) in frozen for parameter in model.parameters()):
        raise ConfigError(
            f"protocols: frozen leaves nothing of {name}'s network to train: its parameters are all the encoder's"
        )


def downstream_side(grid: GridConfig, name: str) -> tuple[str, int | None]:
    """The grid key that sets the side of the square (cubic) inputs of downstream task ``name``, and its value: the task's
    ``patch_size`` or ``slice_size``, else its dataset's ``image_size``; None where the data decide (e.g. MedMNIST's 0)."""
    config = grid.downstream_config(name)
    for field in ("patch_size", "slice_size"):
        if isinstance(getattr(config, field, None), int):
            return f"downstream.{name}.{field}", getattr(config, field)
    size = asdict(grid.dataset_config(config.dataset)).get("image_size")
    return f"datasets.{config.dataset}.image_size", size if isinstance(size, int) and size > 0 else None


def _describe(error: Exception) -> str:
    """``Type: first line of the message``."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]
