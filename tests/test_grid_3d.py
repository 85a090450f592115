"""A grid in 3D (``spatial_dims: 3``, issue 18): presets, job keys, and a run end to end on the tiny brain phantoms."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import timm
import torch
import yaml
from mlflow.tracking import MlflowClient

from benchmark import preflight
from benchmark.cli import main
from benchmark.device import check_deterministic
from benchmark.grid import load_grid
from benchmark.planner import plan_grid
from benchmark.preflight import available_bytes, training_bytes
from ssl_medbench.core.errors import ConfigError, UserError
from ssl_medbench.datasets.views import AxialPatches, Cubes
from tests.conftest import tiny_grid

VOLUME_SETTINGS = {
    "spatial_dims": 3,
    "encoder": {"name": "chen_vgg3d", "kwargs": {"channels": [4, 8, 16]}},
    "downstream": {"brats_segmentation": {"dataset": "phantom", "patch_size": 16, "inference_batch": 4}},
}


def _load(tmp_path: Path, grid: dict) -> object:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return load_grid(str(path))


def test_the_3d_presets_hold_every_3d_form_of_the_suite():
    for preset in ("smoke3d", "paper3d"):
        grid = load_grid(preset)
        assert grid.spatial_dims == 3 and grid.encoder.name == "chen_vgg3d"
        assert grid.input_view("brats_segmentation") == Cubes(grid.downstream_config("brats_segmentation").patch_size)
    smoke = load_grid("smoke3d")
    assert {"context_restoration", "relative_position", "jigsaw", "models_genesis", "masked_modelling"} <= set(
        smoke.initialisations
    )


def test_3d_jobs_have_their_own_keys_and_2d_keys_stay_as_they_were(tmp_path):
    flat = _load(tmp_path, tiny_grid(tmp_path))
    explicit = _load(tmp_path, tiny_grid(tmp_path, spatial_dims=2))
    volumes = _load(tmp_path, tiny_grid(tmp_path, **VOLUME_SETTINGS))
    versions = {"phantom": "content/test"}
    plans = [plan_grid(grid, versions) for grid in (flat, explicit, volumes)]
    keys = [{job.key for job in plan.pretrain_jobs} | {cell.key for cell in plan.finetune_cells} for plan in plans]
    assert keys[0] == keys[1] and not keys[0] & keys[2]
    assert {job.view for job in plans[0].pretrain_jobs} == {AxialPatches(32)}
    assert {job.view for job in plans[2].pretrain_jobs} == {Cubes(16)}
    assert [job.name for job in plans[2].pretrain_jobs] == ["pretrain/context_restoration/phantom/cubes@16/seed0"]
    # the same 3D grid but a 2D encoder name would be refused, not keyed
    with pytest.raises(ConfigError, match="chen_vgg is a 2D network, but spatial_dims is 3"):
        _load(tmp_path, tiny_grid(tmp_path, spatial_dims=3))


def test_2d_only_downstream_tasks_are_refused_in_a_3d_grid(tmp_path):
    grid = tiny_grid(tmp_path, **VOLUME_SETTINGS)
    grid["downstream_tasks"] = ["brats_segmentation", "abdominal_organ_localisation"]
    grid["datasets"]["ct"] = {"type": "abdominal_ct_phantom", "n_subjects": 4}
    grid["downstream"]["abdominal_organ_localisation"] = {"dataset": "ct"}
    with pytest.raises(ConfigError, match="downstream_tasks: abdominal_organ_localisation has no 3D form"):
        _load(tmp_path, grid)


@pytest.mark.slow
def test_a_3d_grid_runs_end_to_end_on_cubes_with_sliding_window_inference(tiny_phantom_root, tmp_path, capsys):
    grid = tiny_grid(
        tiny_phantom_root,
        fractions=[1.0],
        initialisations=["random", "context_restoration", "jigsaw", "rotation"],
        **VOLUME_SETTINGS,
    )
    path, out = tmp_path / "grid.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(grid))
    assert main(["run", "--grid", str(path), "--out", str(out), "--no-progress"]) == 0
    assert "7 jobs finished, 0 skipped" in capsys.readouterr().out
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("grid-tiny").experiment_id])
    assert len(runs) == 7 and all(run.info.status == "FINISHED" for run in runs)
    for run in runs:
        tags = run.data.tags
        assert tags["spatial_dims"] == "3"
        if tags["kind"] == "pretrain":
            assert tags["pretext_view"] == "cubes@16" and tags["pretext_input_shape"] == "4x16x16x16"
            weights = mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="weights/manifest.json", tracking_uri=client.tracking_uri
            )
            assert json.loads(Path(weights).read_text())["encoder"]["name"] == "chen_vgg3d"
        else:
            assert tags["downstream_input_shape"] == "4x16x16x16"
            assert 0 <= run.data.metrics["dice_mean"] <= 1
    report = (out / "report" / "report.md").read_text()
    assert "## brats_segmentation (3D)" in report and "| 3D | finetune | 100% | CR |" in report


def test_deterministic_3d_runs_are_refused_where_a_gpu_may_run_them(tmp_path, monkeypatch, capsys):
    """torch has no deterministic CUDA backward for MaxPool3d: a 3D grid with --deterministic on a GPU (or on an
    executor whose workers may have one) stops before any data work; on the CPU it runs (and is deterministic)."""
    check_deterministic(True, 3, gpu_possible=False)
    check_deterministic(True, 2, gpu_possible=True)
    check_deterministic(False, 3, gpu_possible=True)
    with pytest.raises(UserError, match="^--deterministic: torch has no deterministic CUDA backward for 3D"):
        check_deterministic(True, 3, gpu_possible=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    path, out = tmp_path / "grid.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(tiny_grid(tmp_path, **VOLUME_SETTINGS)))
    code = main(["run", "--grid", str(path), "--out", str(out), "--device", "cuda", "--deterministic", "--dry-run"])
    assert code == 2 and "error: --deterministic: torch has no deterministic" in capsys.readouterr().err
    assert not out.exists()


def test_a_view_too_large_for_the_memory_is_refused_by_an_estimate_not_the_out_of_memory_killer(
    tmp_path, monkeypatch, capsys
):
    encoder = timm.create_model("chen_vgg3d", features_only=True, in_chans=1, channels=(4, 8))
    # 24 float32 per element: (4 x 8^3 + 8 x 4^3) elements x batch 2
    assert training_bytes(encoder, 8, 3, 2) == 24 * 4 * 2 * (4 * 512 + 8 * 64)
    assert available_bytes(torch.device("cpu")) > 0
    monkeypatch.setattr(preflight, "available_bytes", lambda device: 2**30)
    path, out = tmp_path / "grid.yaml", tmp_path / "out"
    grid = tiny_grid(tmp_path, **VOLUME_SETTINGS)
    grid["downstream"]["brats_segmentation"]["patch_size"] = 128
    path.write_text(yaml.safe_dump(grid))
    assert main(["run", "--grid", str(path), "--out", str(out), "--dry-run", "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert (
        error.startswith(
            "error: downstream.brats_segmentation.patch_size: one training step on 128x128x128 inputs at batch 4 needs "
            "about 3.9 GiB of activations, more than the 1.0 GiB cpu has; use a smaller patch or batch"
        )
        and len(error.splitlines()) == 1
    )
    grid["downstream"]["brats_segmentation"]["patch_size"] = 16
    path.write_text(yaml.safe_dump(grid))
    assert main(["run", "--grid", str(path), "--out", str(out), "--dry-run", "--no-progress"]) == 0


def test_every_3d_job_key_holds_the_spatial_dims(tmp_path, monkeypatch):
    import benchmark.planner as planner

    payloads = []
    original = planner.job_key
    monkeypatch.setattr(planner, "job_key", lambda payload: payloads.append(payload) or original(payload))
    plan_grid(_load(tmp_path, tiny_grid(tmp_path, **VOLUME_SETTINGS)), {"phantom": "content/test"})
    assert payloads and all(payload["spatial_dims"] == 3 for payload in payloads)
    payloads.clear()
    plan_grid(_load(tmp_path, tiny_grid(tmp_path)), {"phantom": "content/test"})
    assert payloads and all("spatial_dims" not in payload for payload in payloads)


def test_the_memory_estimate_takes_the_larger_of_the_pretraining_and_finetuning_batches(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(preflight, "available_bytes", lambda device: 2**30)
    grid = tiny_grid(tmp_path, **VOLUME_SETTINGS)
    grid["downstream"]["brats_segmentation"]["patch_size"] = 128
    grid["pretrain"]["batch_size"] = 8
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert main(["run", "--grid", str(path), "--out", str(tmp_path / "out"), "--dry-run", "--no-progress"]) == 2
    assert "on 128x128x128 inputs at batch 8 needs about 7.9 GiB" in capsys.readouterr().err
