"""A grid in 3D (``spatial_dims: 3``, issue 18): presets, job keys, and a run end to end on the tiny brain phantoms."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from benchmark.grid import load_grid
from benchmark.planner import plan_grid
from ssl_medbench.core.errors import ConfigError
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
