"""The contract every pretext task meets, as reusable checks: shipped so third-party plugins test themselves the same way.

The suite's own tests run every check on every registered initialisation; a plugin's tests do::

    from ssl_medbench.pretext_tasks.contract import PRETEXT_CHECKS, check_pretext_task

    def test_my_task_meets_the_contract():
        check_pretext_task(MyTask)

or parametrise over ``PRETEXT_CHECKS`` for one test per check. A failed check raises
AssertionError with the reason. The checks run on CPU in seconds: a small structured batch
(:func:`contract_images`), a tiny ``chen_vgg`` encoder, and the segmentation U-Net as the downstream
network that receives the exported weights. A task with a 3D form passes the same checks on volumes with
:data:`VOLUMES` (cubes of 24 voxels, a tiny ``chen_vgg3d``, the 3D segmentation U-Net)::

    check_pretext_task(MyTask, VOLUMES)
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ssl_medbench.core.config_parsing import parse_dataclass
from ssl_medbench.core.contracts import expect
from ssl_medbench.networks.decoders import DECODERS
from ssl_medbench.networks.encoder import EncoderConfig, create_encoder
from ssl_medbench.networks.weights import export_weights, import_weights
from ssl_medbench.pretext_tasks.base import ENCODER, Initialisation, PretextNetwork, PretextTask

#: Optimiser steps of the loss-falls check, and by how much the loss must fall (final < ratio x initial).
LOSS_STEPS = 20
LOSS_RATIO = 0.9


@dataclass(frozen=True)
class ContractSetup:
    """Batch, image and network sizes the checks use."""

    batch: int = 8
    channels: int = 4
    image_size: int = 64
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(kwargs={"channels": [8, 16, 32]}))
    seed: int = 0
    #: Config values of the task under test, as a grid file would give them (empty: the defaults).
    task_config: dict[str, Any] = field(default_factory=dict)
    #: 2: images (B, C, S, S); 3: volumes (B, C, S, S, S), with a 3D encoder.
    spatial_dims: int = 2

    def task(self, cls: type[Initialisation]) -> Any:
        return cls.build(parse_dataclass(cls.Config, self.task_config, cls.__name__), self.spatial_dims)

    @property
    def images_shape(self) -> tuple[int, ...]:
        return (self.batch, self.channels, *(self.image_size,) * self.spatial_dims)


#: The setup of the checks on volumes, for tasks with a 3D form.
VOLUMES = ContractSetup(
    batch=4,
    image_size=24,
    encoder=EncoderConfig(name="chen_vgg3d", kwargs={"channels": [8, 16, 32]}),
    spatial_dims=3,
)


def contract_images(setup: ContractSetup) -> torch.Tensor:
    """(B, C, S, S) float32 images (or (B, C, S, S, S) volumes) with structure: a few Gaussian blobs per channel inside
    a disc (ball), zero outside."""
    generator = torch.Generator().manual_seed(setup.seed)
    batch, channels = setup.batch, setup.channels
    dims = setup.spatial_dims
    axis = torch.linspace(-1, 1, setup.image_size)
    coordinates = torch.meshgrid(*(axis,) * dims, indexing="ij")
    trailing = (None,) * dims
    centres = torch.rand(batch, channels, 6, dims, generator=generator) * 1.4 - 0.7
    widths = 0.08 + 0.25 * torch.rand(batch, channels, 6, *(1,) * dims, generator=generator)
    amplitudes = torch.randn(batch, channels, 6, *(1,) * dims, generator=generator)
    distance = sum((coordinate - centres[(..., axis, *trailing)]) ** 2 for axis, coordinate in enumerate(coordinates))
    images = (amplitudes * torch.exp(-distance / (2 * widths**2))).sum(dim=2)
    return images * (sum(coordinate**2 for coordinate in coordinates) < 0.9).float()


def _build(cls: type[PretextTask], setup: ContractSetup) -> tuple[PretextTask, PretextNetwork]:
    task = setup.task(cls)
    torch.manual_seed(setup.seed)
    return task, PretextNetwork.for_task(task, create_encoder(setup.encoder, setup.channels), setup.channels)


def check_builds_from_default_config(cls: type[Initialisation], setup: ContractSetup = ContractSetup()) -> None:
    """Its ``Config`` is a frozen dataclass whose defaults parse from an empty mapping; it declares what transfers."""
    expect(
        dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen,
        f"{cls.__name__}.Config must be a frozen dataclass",
    )
    expect(
        cls(parse_dataclass(cls.Config, {}, cls.__name__)).config == cls.Config(),
        f"{cls.__name__}: the default config does not round-trip through the grid parser",
    )
    task = setup.task(cls)
    expect(
        set(task.transfers) <= {"encoder", "decoder"},
        f"{cls.__name__}.transfers must name encoder/decoder, got {task.transfers}",
    )
    task.check_image_size(setup.image_size, setup.image_size)
    expect(
        task.spatial_dims == setup.spatial_dims and setup.spatial_dims in cls.spatial_dims_supported,
        f"{cls.__name__}.build gave a {task.spatial_dims}D form for {setup.spatial_dims}D",
    )
    if isinstance(task, PretextTask):
        expect(ENCODER in task.transfers, f"{cls.__name__}: a pretext task must transfer at least the encoder")
        expect(
            task.decoder is None or task.decoder in DECODERS,
            f"{cls.__name__}.decoder must be None or one of {list(DECODERS)}",
        )


def check_batch_matches_spec(cls: type[PretextTask], setup: ContractSetup = ContractSetup()) -> None:
    """``make_batch`` returns the shapes and dtypes ``batch_spec`` documents, on the images' device."""
    task = setup.task(cls)
    images = contract_images(setup)
    inputs, targets = task.make_batch(images, torch.Generator().manual_seed(0))
    spec = task.batch_spec(setup.images_shape)
    for name, tensor, expected in (("inputs", inputs, spec.inputs), ("targets", targets, spec.targets)):
        expect(isinstance(tensor, torch.Tensor), f"{cls.__name__}.make_batch: {name} is not a tensor")
        expect(
            tuple(tensor.shape) == tuple(expected.shape),
            f"{cls.__name__}.make_batch: {name} shape {tuple(tensor.shape)}, documented {expected.shape}",
        )
        expect(
            tensor.dtype == expected.dtype,
            f"{cls.__name__}.make_batch: {name} dtype {tensor.dtype}, documented {expected.dtype}",
        )
        expect(
            tensor.device == images.device,
            f"{cls.__name__}.make_batch: {name} on {tensor.device}, images on {images.device}",
        )


def check_reproducible_per_seed(cls: type[PretextTask], setup: ContractSetup = ContractSetup()) -> None:
    """Same generator seed, same batch; another seed, another batch (the same one if the task is not
    ``randomised``); the global RNG is neither used nor changed."""
    task = setup.task(cls)
    images = contract_images(setup)
    global_state = torch.get_rng_state()
    first = task.make_batch(images, torch.Generator().manual_seed(1))
    again = task.make_batch(images, torch.Generator().manual_seed(1))
    other = task.make_batch(images, torch.Generator().manual_seed(2))
    expect(
        torch.equal(torch.get_rng_state(), global_state),
        f"{cls.__name__}.make_batch draws from the global RNG; use the generator passed in",
    )
    expect(all(torch.equal(a, b) for a, b in zip(first, again)), f"{cls.__name__}.make_batch differs for the same seed")
    same = all(torch.equal(a, b) for a, b in zip(first, other))
    if task.randomised:
        expect(not same, f"{cls.__name__}.make_batch gives the same batch for different seeds")
    else:
        expect(same, f"{cls.__name__} is not randomised, yet make_batch depends on the seed")


def check_gradients_reach_encoder(cls: type[PretextTask], setup: ContractSetup = ContractSetup()) -> None:
    """The loss is finite and every encoder parameter gets a finite, non-zero gradient."""
    task, network = _build(cls, setup)
    inputs, targets = task.make_batch(contract_images(setup), torch.Generator().manual_seed(0))
    losses = task.loss(network(inputs), targets)
    expect("loss" in losses, f"{cls.__name__}.loss must return a dict with a 'loss' entry, got {sorted(losses)}")
    expect(bool(torch.isfinite(losses["loss"])), f"{cls.__name__}: loss is {losses['loss'].item()}")
    losses["loss"].backward()
    for name, parameter in network.encoder.named_parameters():
        expect(parameter.grad is not None, f"{cls.__name__}: no gradient reaches encoder parameter {name}")
        expect(
            bool(torch.isfinite(parameter.grad).all()),
            f"{cls.__name__}: non-finite gradient in encoder parameter {name}",
        )
        expect(bool(parameter.grad.abs().sum() > 0), f"{cls.__name__}: zero gradient in encoder parameter {name}")


def check_loss_falls_on_a_fixed_batch(cls: type[PretextTask], setup: ContractSetup = ContractSetup()) -> None:
    """Over ``LOSS_STEPS`` Adam steps on one fixed batch the loss falls below ``LOSS_RATIO`` x its first value."""
    task, network = _build(cls, setup)
    inputs, targets = task.make_batch(contract_images(setup), torch.Generator().manual_seed(0))
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-3)
    history = []
    for _ in range(LOSS_STEPS + 1):
        loss = task.loss(network(inputs), targets)["loss"]
        history.append(float(loss.detach()))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    expect(
        all(math.isfinite(value) for value in history), f"{cls.__name__}: loss not finite during training: {history}"
    )
    expect(
        history[-1] < LOSS_RATIO * history[0],
        f"{cls.__name__}: loss fell only from {history[0]:.4g} to {history[-1]:.4g} in {LOSS_STEPS} steps",
    )


def check_weights_transfer_exactly(cls: type[PretextTask], setup: ContractSetup = ContractSetup()) -> None:
    """Exported parts reload with ``strict=True`` into the segmentation U-Net and compute exactly what they computed."""
    from ssl_medbench.downstream import DOWNSTREAM_TASKS

    task, network = _build(cls, setup)
    inputs, targets = task.make_batch(contract_images(setup), torch.Generator().manual_seed(0))
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-3)
    task.loss(network(inputs), targets)["loss"].backward()
    optimiser.step()  # move the weights away from their initialisation
    parts = {name: getattr(network, name) for name in task.transfers}
    with tempfile.TemporaryDirectory() as folder:
        export_weights(Path(folder), parts, setup.encoder, setup.channels, {"pretext_task": cls.__name__})
        manifest, encoder, decoder = import_weights(Path(folder))
    expect(
        sorted(manifest["parts"]) == sorted(task.transfers),
        f"{cls.__name__}: exported {sorted(manifest['parts'])}, transfers {task.transfers}",
    )
    brats = DOWNSTREAM_TASKS.get("brats_segmentation")
    segmentation = brats.build(brats.Config(), setup.channels, spatial_dims=setup.spatial_dims)
    downstream = segmentation.build_model(encoder, decoder).eval()
    network.eval()
    images = contract_images(setup)
    with torch.no_grad():
        original, transferred = network.encoder(images), downstream.encoder(images)
        expect(
            all(torch.equal(a, b) for a, b in zip(original, transferred)),
            f"{cls.__name__}: transferred encoder computes different features",
        )
        if "decoder" in task.transfers:
            expect(
                torch.equal(network.decoder(original), downstream.decoder(transferred)),
                f"{cls.__name__}: transferred decoder computes a different output",
            )


PretextCheck = Callable[[type[PretextTask], ContractSetup], None]

#: Every check a pretext task (an initialisation that pretrains) must pass, by name.
PRETEXT_CHECKS: dict[str, PretextCheck] = {
    "builds_from_default_config": check_builds_from_default_config,
    "batch_matches_spec": check_batch_matches_spec,
    "reproducible_per_seed": check_reproducible_per_seed,
    "gradients_reach_encoder": check_gradients_reach_encoder,
    "loss_falls_on_a_fixed_batch": check_loss_falls_on_a_fixed_batch,
    "weights_transfer_exactly": check_weights_transfer_exactly,
}


def check_pretext_task(cls: type[PretextTask], setup: ContractSetup = ContractSetup()) -> None:
    """Run every check of :data:`PRETEXT_CHECKS`; the first failure raises AssertionError."""
    expect(isinstance(cls, type) and issubclass(cls, PretextTask), f"{cls!r} is not a PretextTask subclass")
    for check in PRETEXT_CHECKS.values():
        check(cls, setup)
