"""Every registered initialisation meets the contract of ``pretext_tasks.contract`` (built-ins and installed plugins alike)."""

from __future__ import annotations

import dataclasses

import pytest

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import PretextTask
from ssl_medbench.pretext_tasks.contract import (
    PRETEXT_CHECKS,
    VOLUMES,
    ContractSetup,
    check_builds_from_default_config,
    contract_images,
)
from tests.conftest import PAPER_INITIALISATIONS

PRETEXT_NAMES = [name for name in PRETEXT_TASKS.names() if issubclass(PRETEXT_TASKS.get(name), PretextTask)]
LABELLED_NAMES = [name for name in PRETEXT_TASKS.names() if PRETEXT_TASKS.get(name).uses_labels]
BASELINE_NAMES = [name for name in PRETEXT_TASKS.names() if name not in PRETEXT_NAMES + LABELLED_NAMES]


def test_all_seven_initialisations_of_the_paper_are_registered():
    paper = set(PAPER_INITIALISATIONS)
    assert paper <= set(PRETEXT_TASKS.names())
    labels = {PRETEXT_TASKS.get(name).label for name in paper}
    assert labels == {"RD", "RD+AG", "AE", "RP", "JS", "CP", "CR"}


@pytest.mark.parametrize("check", sorted(PRETEXT_CHECKS))
@pytest.mark.parametrize("name", PRETEXT_NAMES)
def test_pretext_task_meets_the_contract(name, check):
    PRETEXT_CHECKS[check](PRETEXT_TASKS.get(name), ContractSetup())


VOLUME_NAMES = [name for name in PRETEXT_NAMES if 3 in PRETEXT_TASKS.get(name).spatial_dims_supported]


def test_every_built_in_pretext_task_has_a_3d_form():
    """Issue 18: every pretext task of the suite runs in 3D as well (a third-party plugin may stay 2D)."""
    built_in = [name for name in PRETEXT_NAMES if PRETEXT_TASKS.get(name).__module__.startswith("ssl_medbench.")]
    assert sorted(built_in) == sorted(name for name in VOLUME_NAMES if name in built_in)
    assert len(built_in) >= 10


@pytest.mark.parametrize("check", sorted(PRETEXT_CHECKS))
@pytest.mark.parametrize("name", VOLUME_NAMES)
def test_pretext_task_meets_the_contract_in_3d(name, check):
    PRETEXT_CHECKS[check](PRETEXT_TASKS.get(name), VOLUMES)


@pytest.mark.parametrize("name", ["autoencoder", "context_prediction", "context_restoration"])
def test_a_deconv_decoder_is_pretrained_in_3d_but_not_transferred(name):
    for check in PRETEXT_CHECKS.values():
        check(PRETEXT_TASKS.get(name), dataclasses.replace(VOLUMES, task_config={"decoder": "deconv"}))


def test_a_task_without_a_3d_form_is_refused_by_name():
    """A plugin that declares no 3D form (the default) stays 2D."""
    from tests.plugins.denoising import Denoising

    assert Denoising.spatial_dims_supported == (2,) and Denoising.build(None).spatial_dims == 2
    with pytest.raises(ValueError, match=r"^Denoising has no 3D form \(it works in 2D\)$"):
        Denoising.build(None, spatial_dims=3)
    with pytest.raises(ValueError, match="has no 4D form"):
        PRETEXT_TASKS.get("context_restoration").build(None, spatial_dims=4)


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_baseline_builds_and_transfers_nothing(name):
    check_builds_from_default_config(PRETEXT_TASKS.get(name))
    baseline = PRETEXT_TASKS.get(name)()
    assert baseline.transfers == () and not baseline.requires_pretraining


def test_the_controls_are_registered_random_control_on_its_own_weight_stream_supervised_pretraining_with_labels():
    control, supervised = PRETEXT_TASKS.get("random_control"), PRETEXT_TASKS.get("supervised_pretraining")
    assert (control.label, control.weight_stream, control.uses_labels) == ("RD'", 1, False)
    assert control().transfers == () and not control().requires_pretraining
    assert PRETEXT_TASKS.get("random").weight_stream == 0
    assert LABELLED_NAMES == ["supervised_pretraining"] and supervised.label == "SUP"
    check_builds_from_default_config(supervised)
    assert supervised().transfers == ("encoder", "decoder") and supervised().requires_pretraining


@pytest.mark.parametrize(
    "name, transfers",
    [
        ("autoencoder", ("encoder", "decoder")),
        ("context_prediction", ("encoder", "decoder")),
        ("context_restoration", ("encoder", "decoder")),
        ("relative_position", ("encoder",)),
        ("jigsaw", ("encoder",)),
    ],
)
def test_what_each_paper_task_transfers(name, transfers):
    """Chen et al. 2019, Section 2: RP and JS initialise only the analysis part; AE, CP and CR also the reconstruction part."""
    assert PRETEXT_TASKS.get(name)().transfers == transfers


@pytest.mark.parametrize("name", ["autoencoder", "context_prediction", "context_restoration"])
def test_a_deconv_decoder_is_pretrained_but_not_transferred(name):
    """Fig. 3, second row: for classification downstream tasks the reconstruction part is a few deconvolutions."""
    cls = PRETEXT_TASKS.get(name)
    task = cls(cls.Config(decoder="deconv"))
    assert task.decoder == "deconv" and task.transfers == ("encoder",)
    for check in PRETEXT_CHECKS.values():
        check(cls, ContractSetup(task_config={"decoder": "deconv"}))


def test_a_reconstruction_config_without_the_decoder_choice_is_refused_by_name():
    from dataclasses import dataclass

    from ssl_medbench.pretext_tasks.context_restoration import ContextRestoration

    class Forgetful(ContextRestoration):
        @dataclass(frozen=True)
        class Config:
            iterations: int = 1

    with pytest.raises(TypeError, match="Forgetful.Config must subclass ReconstructionTask.Config"):
        Forgetful()


def test_contract_catches_a_task_that_uses_the_global_rng():
    from tests.plugins.denoising import Denoising

    class GlobalNoise(Denoising):
        def make_batch(self, images, generator):
            import torch

            return images + torch.randn(images.shape), images

    with pytest.raises(AssertionError, match="global RNG"):
        PRETEXT_CHECKS["reproducible_per_seed"](GlobalNoise, ContractSetup())


def test_contract_catches_a_batch_that_differs_from_its_spec():
    from tests.plugins.denoising import Denoising

    class Cropping(Denoising):
        def make_batch(self, images, generator):
            return images[..., 1:], images

    with pytest.raises(AssertionError, match="shape"):
        PRETEXT_CHECKS["batch_matches_spec"](Cropping, ContractSetup())


def test_contract_catches_an_encoder_the_loss_does_not_reach():
    from ssl_medbench.pretext_tasks.context_restoration import ContextRestoration

    class IgnoresTheDeepestStage(ContextRestoration):
        def forward(self, encoder, decoder, head, inputs):
            features = encoder(inputs)
            return head(decoder([features[0], *(f.detach() for f in features[1:])]))

    with pytest.raises(AssertionError, match="gradient"):
        PRETEXT_CHECKS["gradients_reach_encoder"](IgnoresTheDeepestStage, ContractSetup())


def test_contract_images_are_structured_and_deterministic():
    setup = ContractSetup()
    images = contract_images(setup)
    assert images.shape == setup.images_shape
    assert images.equal(contract_images(setup))
    assert (images[..., 0, 0] == 0).all() and images.abs().amax() > 0.1
