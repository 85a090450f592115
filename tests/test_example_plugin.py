"""The example third-party plugin (examples/rotation_plugin) pip-installed, then used through the command line like any user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import tiny_grid

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "rotation_plugin"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """pip-install the example into its own site folder; returns the environment that sees it (as an installed package)."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert list(site.glob("ssl_medbench_rotation-*.dist-info/entry_points.txt"))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}


def _benchmark(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_installed_plugin_is_listed(installed_plugin):
    listed = _benchmark(installed_plugin, "list")
    assert listed.returncode == 0, listed.stderr
    pretext_section = listed.stdout.split("downstream tasks:")[0]
    assert "rotation_one_per_image" in pretext_section and "PluginLoadWarning" not in listed.stderr


def test_installed_plugin_runs_a_tiny_grid(installed_plugin, tiny_phantom_root, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        yaml.safe_dump(
            tiny_grid(tiny_phantom_root, initialisations=["random", "rotation_one_per_image"], fractions=[1.0])
        )
    )
    out = tmp_path / "out"
    ran = _benchmark(installed_plugin, "run", "--grid", str(grid), "--out", str(out), "--no-progress")
    assert ran.returncode == 0, ran.stderr
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("grid-tiny").experiment_id])
    rotation = {r.data.tags["kind"]: r for r in runs if r.data.tags["initialisation"] == "rotation_one_per_image"}
    assert set(rotation) == {"pretrain", "finetune"} and all(r.info.status == "FINISHED" for r in rotation.values())
    assert rotation["finetune"].data.tags["transferred_parts"] == "encoder"
    assert "| 100% | RT1 |" in (out / "report" / "report.md").read_text()


def test_plugin_passes_its_own_tests_built_on_the_shipped_contract(installed_plugin):
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        env=installed_plugin,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert tested.returncode == 0, tested.stdout[-3000:]
    assert "8 passed" in tested.stdout
