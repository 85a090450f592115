"""The command line end to end: list, dry run, a tiny grid recorded in MLflow, resume, report, bad input."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from ssl_medbench.core.run_tags import ALL_TAGS
from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from tests.brats_files import write_subject
from tests.conftest import PAPER_INITIALISATIONS, TINY_FETAL_PHANTOM

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _client(out: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{out / 'mlflow.db'}")


def _runs(out: Path, experiment: str = "grid-tiny"):
    client = _client(out)
    found = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([found.experiment_id], max_results=1000) if found else [])


def test_list_prints_every_registry(capsys):
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    for name in ("pretext tasks", "context_restoration", "random", "brats_segmentation", "brats_phantom", "smoke"):
        assert name in printed
    assert "jigsaw                   JS     pretrains; transfers encoder; 2D and 3D\n" in printed
    assert "context_restoration      CR     pretrains; transfers encoder + decoder; 2D and 3D\n" in printed
    assert "random_augmentation      RD+AG  no pretraining; transfers nothing; 2D and 3D\n" in printed
    assert "  brats_segmentation             2D and 3D\n" in printed
    assert "  fetal_plane_classification     2D\n" in printed and "smoke3d" in printed


def test_dry_run_prints_the_plan_and_writes_only_its_calibration(tmp_path, capsys):
    assert main(["run", "--grid", "smoke", "--dry-run", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "27 pretrain jobs + 108 finetune cells on cpu" in printed
    out = tmp_path / "out"  # nothing but the calibration of the cost estimate, kept for the next plan
    assert [path.relative_to(out).parent for path in out.rglob("*") if path.is_file()] == [Path("calibration")]


def test_tiny_grid_records_everything_in_mlflow_and_resumes(write_grid, tmp_path, capsys):
    grid, out = write_grid(), tmp_path / "out"
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert "5 jobs finished, 0 skipped" in first
    assert f"mlflow ui --backend-store-uri sqlite:///{out.resolve()}/mlflow.db" in first

    client, runs = _runs(out)
    assert len(runs) == 5 and all(r.info.status == "FINISHED" for r in runs)
    pretrain = [r for r in runs if r.data.tags["kind"] == "pretrain"]
    finetune = [r for r in runs if r.data.tags["kind"] == "finetune"]
    assert len(pretrain) == 1 and len(finetune) == 4

    job = pretrain[0]
    assert job.data.tags["initialisation"] == "context_restoration"
    history = client.get_metric_history(job.info.run_id, "pretrain_loss")
    assert [m.step for m in history] == [0, 1]
    weights = {a.path for a in client.list_artifacts(job.info.run_id, "weights")}
    assert weights == {"weights/manifest.json", "weights/encoder.pt", "weights/decoder.pt"}

    for cell in finetune:
        tags = cell.data.tags
        assert {
            "initialisation",
            "downstream_task",
            "label_fraction",
            "seed",
            "job_key",
            "pretrain_run_id",
            "test_subjects_sha256",
        } <= set(tags)
        assert tags["pretrain_run_id"] == (job.info.run_id if tags["initialisation"] == "context_restoration" else "")
        assert len(client.get_metric_history(cell.info.run_id, "train_loss")) == 2
        assert 0 <= cell.data.metrics["dice_whole"] <= 1 and cell.data.metrics["hd95_medpy_whole"] >= 0
        assert 0 <= cell.data.metrics["nsd_2mm_whole"] <= 1 and cell.data.metrics["hd95_surface_elements_core"] >= 0
        conventions = json.loads(tags["metric_conventions"])
        assert set(conventions) == {
            "hd95_medpy_<region>",
            "hd95_surface_elements_<region>",
            "nsd_<tolerance>mm_<region>",
            "empty masks",
        }
        assert conventions["empty masks"].startswith("image_diagonal: ")
        artifacts = {a.path for a in client.list_artifacts(cell.info.run_id)}
        assert {
            "per_subject_metrics.csv",
            "resolved_config.yaml",
            "labelled_subjects.txt",
            "test_subjects.txt",
        } <= artifacts
        local = Path(
            mlflow.artifacts.download_artifacts(
                run_id=cell.info.run_id,
                artifact_path="per_subject_metrics.csv",
                dst_path=str(tmp_path / cell.info.run_id),
                tracking_uri=client.tracking_uri,
            )
        )
        table = pd.read_csv(local)
        assert len(table) == 1  # one test subject of four
        assert table["dice_whole"].mean() == pytest.approx(cell.data.metrics["dice_whole"])
        assert tags["label_fraction"] in {"1", "0.5"}
        assert int(cell.data.params["labelled_subjects"]) == (3 if tags["label_fraction"] == "1" else 1)
    assert len({c.data.tags["test_subjects_sha256"] for c in finetune}) == 1
    written = {tag for run in runs for tag in run.data.tags if not tag.startswith("mlflow.")}
    assert written - ALL_TAGS == set(), "tags written outside the run-tag schema (ssl_medbench.core.run_tags)"

    report = (out / "report" / "report.md").read_text()
    assert "## brats_segmentation" in report and "| 100% | RD |" in report and "| 50% | CR |" in report
    conventions_line = (
        "Conventions: hd95_medpy_<region>: 95th percentile of both directed voxel-surface distance sets pooled "
        "(medpy.metric.binary.hd95); hd95_surface_elements_<region>: "
    )
    assert report.count(conventions_line) >= 1 and "empty masks: image_diagonal: both masks empty" in report
    assert "Hausdorff95 is compared as hd95_medpy_<region>, the medpy convention" in report
    assert "| brats_segmentation | finetune | 100% | RD | hd95_medpy_whole | mm (as reported) | 30.78 |" in report

    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 0
    second = capsys.readouterr().out
    assert "resuming: 5 of 5 jobs already FINISHED" in second
    assert "0 jobs finished, 5 skipped" in second
    assert len(_runs(out)[1]) == 5

    (out / "report" / "report.md").unlink()
    assert main(["report", "--out", str(out)]) == 0
    assert "## brats_segmentation" in (out / "report" / "report.md").read_text()
    assert main(["report", "--out", str(out), "--experiment", "grid-nope"]) == 2
    assert "no experiment 'grid-nope'" in capsys.readouterr().err
    assert main(["report", "--out", str(tmp_path / "empty")]) == 2
    assert "no MLflow store" in capsys.readouterr().err


def test_all_seven_initialisations_run_end_to_end_with_previews_and_the_right_weights(write_grid, tmp_path, capsys):
    paper = list(PAPER_INITIALISATIONS)
    grid, out = write_grid(initialisations=paper, fractions=[1.0]), tmp_path / "out"
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 0
    assert "12 jobs finished, 0 skipped" in capsys.readouterr().out
    client, runs = _runs(out)
    assert all(r.info.status == "FINISHED" for r in runs)
    pretrain = {r.data.tags["initialisation"]: r for r in runs if r.data.tags["kind"] == "pretrain"}
    finetune = {r.data.tags["initialisation"]: r for r in runs if r.data.tags["kind"] == "finetune"}
    assert sorted(pretrain) == [
        "autoencoder",
        "context_prediction",
        "context_restoration",
        "jigsaw",
        "relative_position",
    ]
    assert sorted(finetune) == sorted(paper)
    for name, run in pretrain.items():
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "pretext")}
        assert "pretext/preview.png" in artifacts
        preview = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id,
                artifact_path="pretext/preview.png",
                dst_path=str(tmp_path / name),
                tracking_uri=client.tracking_uri,
            )
        )
        assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        weights = {a.path.removeprefix("weights/") for a in client.list_artifacts(run.info.run_id, "weights")}
        expected = PRETEXT_TASKS.get(name)().transfers
        assert weights == {"manifest.json", *(f"{part}.pt" for part in expected)}
        assert finetune[name].data.tags["transferred_parts"] == ",".join(expected)
        assert finetune[name].data.tags["pretrain_run_id"] == run.info.run_id
    assert "pretext/jigsaw_permutations.csv" in {
        a.path for a in client.list_artifacts(pretrain["jigsaw"].info.run_id, "pretext")
    }
    assert "accuracy" in " ".join(client.get_run(pretrain["jigsaw"].info.run_id).data.metrics)
    assert finetune["random_augmentation"].data.tags["augmentation"] == "on"
    assert finetune["random"].data.tags["augmentation"] == "off"
    assert finetune["random_augmentation"].data.params["initialisation.rotation_degrees"] == "10.0"
    report = (out / "report" / "report.md").read_text()
    for label in ("RD", "RD+AG", "AE", "RP", "JS", "CP", "CR"):
        assert f"| 100% | {label} |" in report


def test_plane_classification_and_organ_localisation_run_end_to_end_on_their_phantoms(write_grid, tmp_path, capsys):
    grid = write_grid(
        initialisations=["random", "random_augmentation", "context_restoration"],
        fractions=[1.0],
        downstream_tasks=["fetal_plane_classification", "abdominal_organ_localisation"],
        datasets={
            "fetal": TINY_FETAL_PHANTOM,
            "ct": {
                "type": "abdominal_ct_phantom",
                "n_subjects": 4,
                "spacing_xy_mm": 12.0,
                "spacing_z_mm": 15.0,
                "test_fraction": 0.25,
            },
        },
        downstream={
            "fetal_plane_classification": {"dataset": "fetal"},
            "abdominal_organ_localisation": {"dataset": "ct", "slice_size": 32},
        },
    )
    out = tmp_path / "out"
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 0
    assert "8 jobs finished, 0 skipped" in capsys.readouterr().out
    client, runs = _runs(out)
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in (r for r in runs if r.data.tags["kind"] == "pretrain"):
        # Fig. 3: before classification-type tasks the reconstruction part is a few deconvolutions, not transferred
        assert run.data.params["pretext.decoder"] == "deconv"
        assert {a.path for a in client.list_artifacts(run.info.run_id, "weights")} == {
            "weights/manifest.json",
            "weights/encoder.pt",
        }
    cells = {
        (r.data.tags["downstream_task"], r.data.tags["initialisation"]): r
        for r in runs
        if r.data.tags["kind"] == "finetune"
    }
    # pretraining saw what each downstream network takes: whole 32-pixel images, and CT slices resized to 32
    seen = {r.data.tags["dataset"]: r.data.tags for r in runs if r.data.tags["kind"] == "pretrain"}
    assert {name: tags["pretext_view"] for name, tags in seen.items()} == {"fetal": "images@32", "ct": "slices_xyz@32"}
    for cell in cells.values():
        assert cell.data.tags["downstream_input_shape"] == seen[cell.data.tags["dataset"]]["pretext_input_shape"]
    fetal = cells[("fetal_plane_classification", "context_restoration")]
    assert fetal.data.tags["transferred_parts"] == "encoder"
    assert all(0 <= fetal.data.metrics[m] <= 1 for m in ("precision", "recall", "f1", "accuracy"))
    artifacts = {a.path for a in client.list_artifacts(fetal.info.run_id)}
    assert {
        "confusion_matrix.csv",
        "confusion_matrix.png",
        "classification_report.csv",
        "per_subject_metrics.csv",
    } <= artifacts
    ct = cells[("abdominal_organ_localisation", "random")]
    for organ in ("left_kidney", "right_kidney", "liver", "spleen", "pancreas"):
        assert 0 <= ct.data.metrics[f"detected_{organ}"] <= 1  # a miss is scored: the distance is never NaN
        assert not math.isnan(ct.data.metrics[f"centroid_{organ}"])
        assert json.loads(ct.data.tags["metric_units"])[f"detected_{organ}"] == "fraction"
    assert cells[("abdominal_organ_localisation", "random_augmentation")].data.tags["augmentation"] == "on"
    report = (out / "report" / "report.md").read_text()
    assert "## fetal_plane_classification" in report
    assert "| precision | recall | f1 | precision_anatomical | recall_anatomical | f1_anatomical | accuracy |" in report
    assert "| ct | abdominal_organ_localisation | 1x32x32 | slices_xyz@32 | 1x32x32 |" in report
    assert "## abdominal_organ_localisation" in report and "centroid_liver" in report


def test_same_grid_twice_gives_identical_metrics_on_cpu(write_grid, tmp_path):
    grid = write_grid(initialisations=["context_restoration"], fractions=[0.5])
    metrics = []
    for attempt in ("a", "b"):
        assert main(["run", "--grid", str(grid), "--out", str(tmp_path / attempt), "--no-progress"]) == 0
        _, runs = _runs(tmp_path / attempt)
        metrics.append({r.info.run_name: r.data.metrics for r in runs})
    assert metrics[0] == metrics[1]
    assert "dice_whole" in metrics[0]["finetune/context_restoration/brats_segmentation/0.5/seed0"]


@pytest.fixture
def plugin_entry_points(monkeypatch):
    """Register the test plugins through patched entry points, as an installed distribution would."""
    group = "ssl_medbench.pretext_tasks"
    points = [
        importlib.metadata.EntryPoint("denoise_test", "tests.plugins.denoising:Denoising", group),
        importlib.metadata.EntryPoint("nan_test", "tests.plugins.denoising:NanLoss", group),
    ]
    real = importlib.metadata.entry_points
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda **kw: [p for p in points if p.group == kw.get("group")] if "group" in kw else real(**kw),
    )
    monkeypatch.setattr(PRETEXT_TASKS, "_entry_points_loaded", False)
    monkeypatch.setattr(PRETEXT_TASKS, "_items", dict(PRETEXT_TASKS._items))
    yield


def test_entry_point_plugin_in_list_and_grid_and_a_failing_job_does_not_stop_the_grid(
    plugin_entry_points, write_grid, tmp_path, capsys
):
    assert main(["list"]) == 0
    assert "denoise_test" in capsys.readouterr().out
    grid = write_grid(initialisations=["random", "denoise_test", "nan_test"], fractions=[1.0])
    out = tmp_path / "out"
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 1
    printed = capsys.readouterr().out
    assert "3 jobs finished, 0 skipped (finished earlier), 2 failed" in printed
    assert "FAILED pretrain/nan_test/phantom/axial_patches@32/seed0: FloatingPointError" in printed
    client, runs = _runs(out)
    status = {r.info.run_name: r.info.status for r in runs}
    assert status["pretrain/denoise_test/phantom/axial_patches@32/seed0"] == "FINISHED"
    assert status["finetune/denoise_test/brats_segmentation/1/seed0"] == "FINISHED"
    assert status["finetune/random/brats_segmentation/1/seed0"] == "FINISHED"
    assert status["pretrain/nan_test/phantom/axial_patches@32/seed0"] == "FAILED"
    assert status["finetune/nan_test/brats_segmentation/1/seed0"] == "FAILED"
    failed = next(r for r in runs if r.info.run_name == "pretrain/nan_test/phantom/axial_patches@32/seed0")
    assert "FloatingPointError" in failed.data.tags["error"]
    assert "traceback.txt" in {a.path for a in client.list_artifacts(failed.info.run_id)}
    assert "Runs not finished" in (out / "report" / "report.md").read_text()


def _broken_brats(tmp_path: Path, problem: str) -> Path:
    import nibabel as nib
    import numpy as np

    root = tmp_path / "brats"
    for index in range(3):
        write_subject(root, f"S{index}", seed=index)
    folder = root / "S1"
    if problem == "missing modality":
        (folder / "S1_t1ce.nii.gz").unlink()
    elif problem == "seg shape":
        nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), np.eye(4)), folder / "S1_seg.nii.gz")
    elif problem == "labels":
        nib.save(nib.Nifti1Image(np.full((12, 10, 8), 7, np.uint8), np.eye(4)), folder / "S1_seg.nii.gz")
    elif problem == "unreadable":
        (folder / "S1_t2.nii.gz").write_bytes(b"\x1f\x8b garbage")
    return root


@pytest.mark.parametrize(
    "problem, message",
    [
        ("missing modality", "S1: missing t1ce"),
        ("seg shape", "S1_seg.nii.gz: shape (3, 3, 3) differs"),
        ("labels", "S1_seg.nii.gz: label values [7] outside the BraTS convention"),
        ("unreadable", "S1_t2.nii.gz"),
    ],
)
def test_bad_brats_data_is_one_line_exit_2_and_nothing_recorded(problem, message, write_grid, tmp_path, capsys):
    root = _broken_brats(tmp_path, problem)
    grid = write_grid(datasets={"phantom": {"type": "brats", "root": str(root), "test_fraction": 0.34}})
    assert main(["run", "--grid", str(grid), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and message in error and "\n" not in error
    assert not (tmp_path / "out" / "mlflow.db").exists()


def test_fraction_leaving_no_training_subject_is_rejected_before_running(write_grid, tmp_path, capsys):
    grid = write_grid(fractions=[1.0, 0.2])  # 3 training subjects: 20 % is none of them
    assert main(["run", "--grid", str(grid), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "label fraction 0.2 of 3 training subjects leaves no labelled subject" in capsys.readouterr().err
    assert not (tmp_path / "out" / "mlflow.db").exists()


def _benchmark_process(*args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "benchmark", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--grid", "nonexistent"], "error: unknown grid 'nonexistent'"),
        (["run", "--set", "fractions=[2]"], "error: preset smoke: fractions: 2.0 is outside (0, 1]"),
        (["run", "--set", "initialisations=[jigsw]"], "error: unknown pretext task 'jigsw'"),
        (["run", "--set", "pretrain.lr=1"], "error: preset smoke: pretrain: unknown key 'lr'"),
    ],
)
def test_command_line_errors_exit_2_without_traceback(args, message):
    process = _benchmark_process(*args, "--dry-run")
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert stderr.strip().startswith(message), stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1


def _finished_runs(database: Path) -> list[str]:
    if not database.exists():
        return []
    try:
        with sqlite3.connect(database, timeout=1) as connection:
            return [row[0] for row in connection.execute("select name from runs where status = 'FINISHED'")]
    except sqlite3.OperationalError:
        return []


def test_sigkill_mid_grid_then_rerun_completes_without_duplicates(write_grid, tmp_path):
    grid = write_grid(finetune={"epochs": 2, "steps_per_epoch": 15, "batch_size": 4})
    out = tmp_path / "out"
    process = _benchmark_process("run", "--grid", str(grid), "--out", str(out), "--no-progress")
    deadline = time.monotonic() + 300
    while len(_finished_runs(out / "mlflow.db")) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert process.poll() is None, "the grid finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    killed_at = len(_finished_runs(out / "mlflow.db"))
    assert 2 <= killed_at < 5

    rerun = _benchmark_process("run", "--grid", str(grid), "--out", str(out), "--no-progress")
    stdout, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr
    assert f"resuming: {killed_at} of 5 jobs already FINISHED" in stdout
    client, runs = _runs(out)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    keys = [r.data.tags["job_key"] for r in finished]
    assert len(keys) == 5 and len(set(keys)) == 5
    interrupted = [r for r in runs if r.info.status != "FINISHED"]
    assert all(r.info.status == "KILLED" and r.data.tags.get("interrupted") == "true" for r in interrupted)
    config = client.download_artifacts(finished[0].info.run_id, "resolved_config.yaml", str(tmp_path))
    assert yaml.safe_load(Path(config).read_text())["grid"]["name"] == "tiny"


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--workers", "0"], "error: argument --workers: expected an integer from 1 to 1024, got '0'"),
        (["run", "--device", "tpu"], "error: argument --device: expected auto, cpu, cuda or cuda:N, got 'tpu'"),
        (
            ["run", "--set", "downstream.brats_segmentation.patch_size=60"],
            "error: downstream.brats_segmentation.patch_size: 60 does not fit the autoencoder",
        ),
        (["run", "--set", "name=../x"], "error: preset smoke: name: '../x' is not a safe name"),
    ],
)
def test_options_grid_and_networks_are_checked_before_the_plan_in_one_line(args, message):
    process = _benchmark_process(*args, "--dry-run")
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 2 and not stdout, stdout
    assert stderr.strip().startswith(message), stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
