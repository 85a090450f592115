"""Every registered pretext task x every registered downstream task: pretrained parts load strictly and one training step runs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_medbench.datasets.base import Volume
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.networks.encoder import EncoderConfig, create_encoder
from ssl_medbench.networks.weights import export_weights, import_weights
from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import PretextNetwork, PretextTask

ENCODER = EncoderConfig(kwargs={"channels": [8, 16, 32]})


def _volumes(task_name: str) -> tuple[int, tuple[str, ...], list[Volume]]:
    """Image channels, class names and two small volumes shaped like each downstream task's data."""
    rng = np.random.default_rng(0)
    if task_name == "fetal_plane_classification":
        names = ("a", "b", "c")
        return (
            1,
            names,
            [
                Volume(
                    f"p{i}",
                    rng.standard_normal((1, 32, 32, 4)).astype(np.float32),
                    np.zeros((32, 32, 4), np.uint8),
                    (1.0, 1.0, 1.0),
                    np.array([0, 1, 2, i]),
                )
                for i in range(2)
            ],
        )
    if task_name == "abdominal_organ_localisation":
        names = ("liver", "spleen")
        labels = np.zeros((20, 16, 12), np.uint8)
        labels[2:8, 3:9, 2:6], labels[12:18, 4:10, 5:11] = 1, 2
        return (
            1,
            names,
            [
                Volume(f"c{i}", rng.random((1, 20, 16, 12)).astype(np.float32), labels, (2.0, 2.0, 3.0))
                for i in range(2)
            ],
        )
    labels = rng.integers(0, 4, (32, 32, 6)).astype(np.uint8)
    return (
        4,
        (),
        [
            Volume(f"b{i}", rng.standard_normal((4, 32, 32, 6)).astype(np.float32), labels, (1.0, 1.0, 1.0))
            for i in range(2)
        ],
    )


PRETEXT = [name for name in PRETEXT_TASKS.names() if issubclass(PRETEXT_TASKS.get(name), PretextTask)]


@pytest.mark.parametrize("downstream_name", DOWNSTREAM_TASKS.names())
@pytest.mark.parametrize("pretext_name", PRETEXT)
def test_pretrained_parts_plug_into_every_downstream_task_and_train(pretext_name, downstream_name):
    channels, class_names, volumes = _volumes(downstream_name)
    downstream_cls = DOWNSTREAM_TASKS.get(downstream_name)
    downstream = downstream_cls(downstream_cls.Config(), channels, class_names)
    pretext = PRETEXT_TASKS.get(pretext_name)()
    network = PretextNetwork.for_task(pretext, create_encoder(ENCODER, channels), channels)
    with tempfile.TemporaryDirectory() as folder:
        export_weights(
            Path(folder), {part: getattr(network, part) for part in pretext.transfers}, ENCODER, channels, {}
        )
        _, encoder, decoder = import_weights(Path(folder))
    model = downstream.build_model(encoder, decoder if "decoder" in downstream.accepts else None)
    assert model.encoder is encoder
    inputs, targets = downstream.make_sampler(volumes).sample(4, torch.Generator().manual_seed(0))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = downstream.loss(model(inputs), targets)["loss"]
    assert torch.isfinite(loss)
    loss.backward()
    optimiser.step()
    assert all(p.grad is not None for p in model.encoder.parameters())
    table = downstream.evaluate(model, volumes[:1], torch.device("cpu"))
    assert len(table) >= 1 and set(downstream.summarise(table)) >= set(downstream.metric_directions)
