"""The controls: RD' draws its weights from its own stream and nothing else; supervised pretraining has one pretrain
job per downstream task, trains on every training subject's labels and hands its encoder and decoder on."""

from __future__ import annotations

import dataclasses
import io

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from benchmark.jobs import job_seeds
from benchmark.planner import plan_grid
from ssl_medbench.datasets.views import AxialPatches
from tests.test_planner import _grid, whole_tumour  # noqa: F401  (the fixture)


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_the_negative_control_changes_the_weight_seed_only(seed: int) -> None:
    default, control = job_seeds(seed), job_seeds(seed, weight_stream=1)
    assert control[1:] == default[1:]  # same labelled batches, same augmentation
    assert control[0] != default[0]
    assert job_seeds(seed, weight_stream=2)[0] not in (default[0], control[0])


def test_supervised_pretraining_has_a_job_per_downstream_task_while_a_pretext_task_shares_one(whole_tumour):  # noqa: F811
    grid = _grid(
        initialisations=("random", "jigsaw", "supervised_pretraining"),
        downstream_tasks=("brats_segmentation", "whole_tumour"),
        downstream={"brats_segmentation": {"dataset": "brats", "patch_size": 32}, "whole_tumour": {"dataset": "brats"}},
    )
    plan = plan_grid(grid, {"brats": "v1"})
    supervised = [job for job in plan.pretrain_jobs if job.initialisation == "supervised_pretraining"]
    assert sorted(job.downstream_task for job in supervised) == ["brats_segmentation", "whole_tumour"]
    assert {job.view for job in supervised} == {AxialPatches(32)}
    assert [job.name for job in supervised if job.downstream_task == "whole_tumour"] == [
        "pretrain/supervised_pretraining/whole_tumour/brats/axial_patches@32/seed0"
    ]
    assert [job.downstream_task for job in plan.pretrain_jobs if job.initialisation == "jigsaw"] == [None]
    for cell in plan.finetune_cells:
        if cell.initialisation == "supervised_pretraining":
            job = next(job for job in supervised if job.key == cell.pretrain_key)
            assert job.downstream_task == cell.downstream_task
    # it trains as its task does: that task's finetune schedule is in its key, the pretrain schedule is not
    longer = plan_grid(
        dataclasses.replace(grid, finetune_by_task={"whole_tumour": {"steps_per_epoch": 9}}), {"brats": "v1"}
    )
    repretrained = {job.name for job in longer.pretrain_jobs} - {job.name for job in plan.pretrain_jobs}
    keys = {job.name: job.key for job in plan.pretrain_jobs}
    changed = sorted(job.name for job in longer.pretrain_jobs if keys[job.name] != job.key)
    assert not repretrained and changed == ["pretrain/supervised_pretraining/whole_tumour/brats/axial_patches@32/seed0"]
    other = plan_grid(dataclasses.replace(grid, pretrain=dataclasses.replace(grid.pretrain, epochs=3)), {"brats": "v1"})
    unchanged = sorted(job.name for job in other.pretrain_jobs if keys[job.name] == job.key)
    assert [name.split("/")[1] for name in unchanged] == ["supervised_pretraining", "supervised_pretraining"]


@pytest.mark.slow
def test_controls_run_end_to_end_and_supervised_weights_reach_the_finetune_cells(write_grid, tmp_path, capsys):
    grid = write_grid(initialisations=["random", "random_control", "supervised_pretraining"], fractions=[1.0, 0.5])
    out = tmp_path / "out"
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 0
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("grid-tiny").experiment_id])
    assert all(run.info.status == "FINISHED" for run in runs)
    pretrain = [run for run in runs if run.data.tags["kind"] == "pretrain"]
    assert [run.data.tags["initialisation"] for run in pretrain] == ["supervised_pretraining"]
    supervised = pretrain[0]
    assert supervised.data.tags["downstream_task"] == "brats_segmentation"
    assert supervised.data.params["labelled_subjects"] == "3"  # every training subject of the four
    weights = {a.path for a in client.list_artifacts(supervised.info.run_id, "weights")}
    assert weights == {"weights/manifest.json", "weights/encoder.pt", "weights/decoder.pt"}
    finetune = {
        (run.data.tags["initialisation_label"], run.data.tags["label_fraction"]): run
        for run in runs
        if run.data.tags["kind"] == "finetune"
    }
    for fraction in ("1", "0.5"):
        cell = finetune[("SUP", fraction)]
        assert cell.data.tags["pretrain_run_id"] == supervised.info.run_id
        assert cell.data.tags["transferred_parts"] == "encoder,decoder"
        random, control = finetune[("RD", fraction)], finetune[("RD'", fraction)]
        assert random.data.params["labelled_subjects"] == control.data.params["labelled_subjects"]
        lists = [_text(client, run.info.run_id, "labelled_subjects.txt") for run in (random, control)]
        assert lists[0] == lists[1] and lists[0].strip()
        assert random.data.metrics["train_loss"] != control.data.metrics["train_loss"]  # another draw of weights
        with_reference = [
            "image_blind_per_subject.csv" in {a.path for a in client.list_artifacts(run.info.run_id)}
            for run in (random, control, cell)
        ]
        assert with_reference == [True, False, False]  # scored once per seed and fraction, in the Random cell
        reference = pd.read_csv(io.StringIO(_text(client, random.info.run_id, "image_blind_per_subject.csv")))
        scored = pd.read_csv(io.StringIO(_text(client, random.info.run_id, "per_subject_metrics.csv")))
        assert list(reference.columns) == list(scored.columns) and list(reference.subject_id) == list(scored.subject_id)
        assert all("never_predicted" in run.data.tags for run in (random, control, cell))
    report = (out / "report" / "report.md").read_text()
    assert "## Controls: can this benchmark detect an effect on this data?" in report
    controls = pd.read_csv(out / "report" / "tables" / "controls.csv")
    assert set(controls["arm"]) == {"RD'", "SUP", "image-blind"} and set(controls["metric"]) == {"dice_mean"}


def _text(client: MlflowClient, run_id: str, path: str) -> str:
    mlflow.set_tracking_uri(client.tracking_uri)
    return mlflow.artifacts.load_text(f"runs:/{run_id}/{path}")


def _control_rows(arms: list[tuple[str, float, float, float]], direction: str) -> pd.DataFrame:
    """Control comparison rows (arm, fraction, mean difference, p) of one task, with standard errors for Holm."""
    rows = [
        {
            "task": "t",
            "budget": fraction,
            "arm": arm,
            "metric": "m",
            "mean_difference": difference,
            "ci_low": difference - 0.1,
            "ci_high": difference + 0.1,
            "p_value": p,
            "n_seeds": 5,
            "n_subjects": 8,
            "standard_error": 0.05,
            "degrees_of_freedom": 10.0,
            "direction": direction,
        }
        for arm, fraction, difference, p in arms
    ]
    return pd.DataFrame(rows)


def test_controls_are_judged_where_they_must_show_something_and_untestable_ones_say_so() -> None:
    from ssl_medbench.reports.build import _task_controls

    rows = _control_rows(
        [
            ("RD'", 1.0, 0.01, 0.6),
            ("RD'", 0.25, 0.02, float("nan")),  # too few seeds: not testable, never "as expected"
            ("SUP", 1.0, 5.0, 0.001),  # described only: SUP is checked at the lowest fraction
            ("SUP", 0.25, -4.0, 0.002),  # lower is better: a negative difference is better
            ("image-blind", 1.0, 9.0, 0.0001),
            ("image-blind", 0.25, 9.0, 0.0001),  # described only
        ],
        direction="lower",
    )
    checked = _task_controls(rows)
    assert list(checked["judged"]) == [True, True, False, True, True, False]
    assert list(checked["verdict"]) == ["as expected", "not testable", "", "as expected", "as expected", ""]
    assert checked.loc[~checked["judged"], ["p_value", "p_adjusted"]].isna().all(axis=None)
    # Holm over the three testable checks only: 3 x 0.0001, 2 x 0.002, then max(0.004, 0.6)
    assert list(checked.loc[[4, 3, 0], "p_adjusted"]) == pytest.approx([0.0003, 0.004, 0.6])
    flipped = _task_controls(rows.assign(direction="higher"))
    assert list(flipped["verdict"][[3, 4]]) == [
        "NOT AS EXPECTED: SUP not found better",
        "NOT AS EXPECTED: image-blind not found worse",
    ]
    differs = _task_controls(rows.assign(p_value=0.001))
    assert differs["verdict"][0] == "NOT AS EXPECTED: RD' differs from RD"
