"""Every registered downstream task meets the contract of ``downstream.contract``; broken plugins are caught by name;
reports read metric metadata from the classes without building a task."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ssl_medbench.downstream import DOWNSTREAM_TASKS, DownstreamTask
from ssl_medbench.downstream.abdominal_organ_localisation import AbdominalOrganLocalisation
from ssl_medbench.downstream.contract import DOWNSTREAM_CHECKS, ContractSetup, check_downstream_task, volumes_setup
from ssl_medbench.reports.build import _recorded, build_report
from tests.plugins.broken_downstream import (
    CopiesTheEncoder,
    DropsAMetric,
    Float32Summary,
    GlobalRngSampler,
    InfiniteMetric,
    InstanceUnits,
    NoLossEntry,
    NoPrimaryEndpoint,
    PeeksAtTheImage,
    PeeksAtTrainingImages,
    ReferenceLacksAColumn,
    SilentNan,
    UnknownPrimaryEndpoint,
    ZeroEncoderGradient,
)
from tests.plugins.whole_tumour import WholeTumourSegmentation


@pytest.mark.parametrize("check", list(DOWNSTREAM_CHECKS))
@pytest.mark.parametrize("name", DOWNSTREAM_TASKS.names())
def test_downstream_task_meets_the_contract(name, check):
    DOWNSTREAM_CHECKS[check](DOWNSTREAM_TASKS.get(name), ContractSetup())


VOLUME_TASKS = [name for name in DOWNSTREAM_TASKS.names() if 3 in DOWNSTREAM_TASKS.get(name).spatial_dims_supported]


@pytest.mark.parametrize("check", list(DOWNSTREAM_CHECKS))
@pytest.mark.parametrize("name", VOLUME_TASKS)
def test_downstream_task_meets_the_contract_in_3d(name, check):
    DOWNSTREAM_CHECKS[check](DOWNSTREAM_TASKS.get(name), volumes_setup({"patch_size": 16}))


def test_the_3d_tasks_are_the_segmentation_tasks_and_the_2d_only_ones_say_so():
    assert {"brats_segmentation", "abdominal_organ_segmentation"} <= set(VOLUME_TASKS)
    for name in ("fetal_plane_classification", "abdominal_organ_localisation"):
        task = DOWNSTREAM_TASKS.get(name)
        with pytest.raises(ValueError, match=rf"^{task.__name__} has no 3D form \(it works in 2D\)$"):
            task.build(task.Config(), 1, spatial_dims=3)


def test_a_minimal_third_party_task_meets_the_whole_contract():
    check_downstream_task(WholeTumourSegmentation)


@pytest.mark.parametrize(
    "plugin, check, reason",
    [
        (DropsAMetric, "evaluates_every_subject", "missing from the evaluation: ['hd95_medpy_core']"),
        (SilentNan, "nan_only_where_documented", "'dice_whole' is NaN but documents no NaN case"),
        (NoLossEntry, "one_step_trains", "with a 'loss' entry"),
        (InfiniteMetric, "nan_only_where_documented", "metric 'dice' is infinite"),
        (GlobalRngSampler, "sampler_batches", "the sampler draws from the global RNG"),
        (ZeroEncoderGradient, "one_step_trains", "zero gradient in encoder parameter"),
        (CopiesTheEncoder, "builds_model", "must keep the encoder it was given"),
        (InstanceUnits, "metadata_consistent", "the instance's metric_units {'dice': '%'} differ from the class's"),
        (Float32Summary, "evaluates_every_subject", "summarise gives no float for ['dice']"),
        (NoPrimaryEndpoint, "metadata_consistent", "primary_metric is not declared"),
        (
            UnknownPrimaryEndpoint,
            "metadata_consistent",
            "primary_metric 'dice_mean' is not a metric of metric_specs(()",
        ),
        (PeeksAtTheImage, "image_blind_reference", "the reference's scores depend on the test images"),
        (PeeksAtTrainingImages, "image_blind_reference", "depends on the labelled subjects' images"),
        (ReferenceLacksAColumn, "image_blind_reference", "the reference's columns"),
    ],
)
def test_the_contract_names_a_broken_plugin_and_the_check_it_fails(plugin, check, reason):
    with pytest.raises(AssertionError) as failure:
        check_downstream_task(plugin)
    message = str(failure.value)
    assert f"downstream task {plugin.__qualname__} fails contract check {check!r}" in message and reason in message


def test_a_registered_task_is_named_by_its_registry_name(monkeypatch):
    organs = DOWNSTREAM_TASKS.get("abdominal_organ_localisation")
    monkeypatch.setattr(organs, "loss", lambda task, outputs, targets: {})
    with pytest.raises(AssertionError, match=r"'abdominal_organ_localisation' \(AbdominalOrganLocalisation\) fails"):
        DOWNSTREAM_CHECKS["one_step_trains"](organs, ContractSetup())


def test_a_non_task_is_refused():
    with pytest.raises(AssertionError, match="is not a DownstreamTask subclass"):
        check_downstream_task(int)


def test_organ_metrics_follow_the_class_names_with_the_paper_organs_as_default():
    assert list(AbdominalOrganLocalisation.metric_units_for(("liver",))) == [
        "centroid_liver",
        "wall_liver",
        "detected_liver",
        "centroid_mean",
    ]
    directions = AbdominalOrganLocalisation.metric_directions_for()
    assert {name for name, direction in directions.items() if direction == "higher"} == {
        f"detected_{organ}" for organ in ("left_kidney", "right_kidney", "liver", "spleen", "pancreas")
    }
    assert len(AbdominalOrganLocalisation.metric_specs()) == 3 * 5 + 1  # and the primary endpoint over organs


@pytest.fixture
def tasks_cannot_be_built(monkeypatch):
    """Every registered downstream task's constructor raises, so metadata must come from the classes."""

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} was instantiated")

    for name in DOWNSTREAM_TASKS.names():
        monkeypatch.setattr(DOWNSTREAM_TASKS.get(name), "__init__", refuse)
    monkeypatch.setattr(DownstreamTask, "__init__", refuse)


@pytest.mark.usefixtures("tasks_cannot_be_built")
@pytest.mark.parametrize("name", DOWNSTREAM_TASKS.names())
def test_reports_read_default_units_and_directions_from_the_class(name):
    cls = DOWNSTREAM_TASKS.get(name)
    assert _recorded(pd.DataFrame(), "metric_units", name) == cls.metric_units_for()
    assert _recorded(pd.DataFrame(), "metric_directions", name) == cls.metric_directions_for()


@pytest.mark.usefixtures("tasks_cannot_be_built")
def test_a_report_is_built_without_building_a_task(tmp_path):
    from tests.test_report import _write_store

    uri = _write_store(tmp_path)
    client = MlflowClient(uri)
    for run in client.search_runs([e.experiment_id for e in client.search_experiments()]):
        client.delete_tag(run.info.run_id, "metric_units")
        client.delete_tag(run.info.run_id, "metric_directions")
    build_report(uri, "grid-hand", tmp_path / "report")
    assert "wall_spleen" in (tmp_path / "report" / "report.md").read_text()  # the class's default organs
