"""The executors (local pool, SLURM through submitit's local backend, a local Ray cluster) run the same grid
to the same metrics as the in-process run, and a worker that dies fails only its own job."""

from __future__ import annotations

import importlib.metadata
import os
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from ssl_medbench.pretext_tasks import PRETEXT_TASKS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
GRID = {"initialisations": ["random", "context_restoration"], "fractions": [1.0, 0.5]}
# CPU results depend on the thread count in the last bits; every executor gets one thread per job here.
ONE_THREAD = ["--cpus-per-job", "1"]


def _runs(out: Path) -> list:
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name("grid-tiny").experiment_id], max_results=1000)


def _finished_metrics(out: Path) -> dict[str, dict[str, float]]:
    runs = _runs(out)
    assert all(r.info.status == "FINISHED" for r in runs), {r.info.run_name: r.info.status for r in runs}
    return {r.info.run_name: r.data.metrics for r in runs}


@pytest.fixture(scope="module")
def in_process(tmp_path_factory, tiny_phantom_root) -> tuple[Path, dict[str, dict[str, float]]]:
    import yaml

    from tests.conftest import tiny_grid

    folder = tmp_path_factory.mktemp("in_process")
    grid = folder / "grid.yaml"
    grid.write_text(yaml.safe_dump(tiny_grid(tiny_phantom_root, **GRID)))
    assert main(["run", "--grid", str(grid), "--out", str(folder / "out"), "--no-progress", *ONE_THREAD]) == 0
    return grid, _finished_metrics(folder / "out")


def test_local_pool_gives_the_in_process_metrics(in_process, tmp_path, capsys):
    grid, expected = in_process
    assert (
        main(
            ["run", "--grid", str(grid), "--out", str(tmp_path / "out"), "--no-progress", "--workers", "2", *ONE_THREAD]
        )
        == 0
    )
    assert "5 jobs finished, 0 skipped" in capsys.readouterr().out
    metrics = _finished_metrics(tmp_path / "out")
    assert len(metrics) == 5 and metrics == expected
    assert (
        "1 pretrain jobs (1 initialisations with pretraining x 1 dataset views x 1 seeds = 1), each shared by the "
        "finetune cells that take its view of its dataset: 2 cells started from them."
    ) in (tmp_path / "out" / "report" / "report.md").read_text()


def test_slurm_executor_through_submitit_local_backend_gives_the_in_process_metrics(in_process, tmp_path, capsys):
    pytest.importorskip("submitit", reason="the slurm extra (pip install '.[slurm]') is not installed")
    grid, expected = in_process
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                "--grid",
                str(grid),
                "--out",
                str(out),
                "--no-progress",
                "--executor",
                "slurm",
                "--slurm-cluster",
                "local",
                *ONE_THREAD,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    # two waves: the pretrain job with the cells that need none, then the cells of the pretrain job
    assert "submitted 3 jobs as local array" in printed and "submitted 2 jobs as local array" in printed
    assert _finished_metrics(out) == expected
    assert list((out / "slurm").rglob("*_log.out")), "submitit wrote no task logs"


def test_ray_executor_on_a_local_cluster_gives_the_in_process_metrics(in_process, tmp_path):
    ray = pytest.importorskip("ray", reason="the ray extra (pip install '.[ray]') is not installed")
    grid, expected = in_process
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        assert (
            main(
                [
                    "run",
                    "--grid",
                    str(grid),
                    "--out",
                    str(tmp_path / "out"),
                    "--no-progress",
                    "--executor",
                    "ray",
                    *ONE_THREAD,
                ]
            )
            == 0
        )
    finally:
        ray.shutdown()
    assert _finished_metrics(tmp_path / "out") == expected


def test_a_missing_engine_names_the_extra_to_install(write_grid, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_submitit(name, *args, **kwargs):
        if name == "submitit":
            raise ImportError("No module named 'submitit'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_submitit)
    monkeypatch.setattr(
        importlib,
        "import_module",
        lambda name, *a: without_submitit(name) if name == "submitit" else real_import_module(name, *a),
    )
    assert main(["run", "--grid", str(write_grid(**GRID)), "--out", str(tmp_path / "out"), "--executor", "slurm"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "error: --executor slurm needs submitit, which is not installed: pip install 'ssl-medbench[slurm]'"
    )


real_import_module = importlib.import_module


FAULTY_PLUGINS = {
    "kill_test": "tests.plugins.denoising:KillsWorker",
    "disk_full_test": "tests.plugins.denoising:FillsTheDisk",
}


@pytest.fixture
def faulty_plugins(monkeypatch, tmp_path):
    """``kill_test`` (its job SIGKILLs its process) and ``disk_full_test`` (its job meets a full disk), installed as a
    distribution on sys.path (spawned workers start with this process's sys.path and find the entry points) and
    registered in this process."""
    group = "ssl_medbench.pretext_tasks"
    site = tmp_path / "site"
    info = site / "faulty_test_plugins-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: faulty-test-plugins\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in FAULTY_PLUGINS.items())
    )
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.syspath_prepend(str(site))
    points = [importlib.metadata.EntryPoint(name, target, group) for name, target in FAULTY_PLUGINS.items()]
    real = importlib.metadata.entry_points
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda **kw: points if kw.get("group") == group else real(**kw)
    )
    monkeypatch.setattr(PRETEXT_TASKS, "_entry_points_loaded", False)
    monkeypatch.setattr(PRETEXT_TASKS, "_items", dict(PRETEXT_TASKS._items))


def test_a_dead_worker_fails_only_its_job_and_is_replaced(faulty_plugins, write_grid, tmp_path, capsys):
    out = tmp_path / "out"
    grid = write_grid(initialisations=["random", "kill_test", "context_restoration"], fractions=[1.0])
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress", "--workers", "2", *ONE_THREAD]) == 1
    printed = capsys.readouterr().out
    assert (
        "FAILED pretrain/kill_test/phantom/axial_patches@32/seed0: worker process died (signal 9; killed, or out of memory)"
        in printed
    )
    assert "3 jobs finished, 0 skipped (finished earlier), 2 failed" in printed
    status = {r.info.run_name: r.info.status for r in _runs(out)}
    assert status == {
        "pretrain/kill_test/phantom/axial_patches@32/seed0": "KILLED",  # closed by the driver, not left RUNNING
        "finetune/kill_test/brats_segmentation/1/seed0": "FAILED",  # its pretrain job did not finish
        "pretrain/context_restoration/phantom/axial_patches@32/seed0": "FINISHED",
        "finetune/context_restoration/brats_segmentation/1/seed0": "FINISHED",
        "finetune/random/brats_segmentation/1/seed0": "FINISHED",
    }


def _environments_of(workers: list) -> list[dict[str, str]]:
    """The environment each pool worker process started with; the workers are stopped. Read once the process runs
    the spawned interpreter: between fork and exec, /proc shows the parent's original environment instead."""
    try:
        environments = []
        for worker in workers:
            proc = Path(f"/proc/{worker.process.pid}")
            deadline = time.monotonic() + 60
            while b"spawn_main" not in (proc / "cmdline").read_bytes() and time.monotonic() < deadline:
                time.sleep(0.01)
            lines = (proc / "environ").read_text().split("\0")
            environments.append(dict(line.split("=", 1) for line in lines if "=" in line))
        return environments
    finally:
        for worker in workers:
            worker.stop()


def test_pool_workers_are_pinned_to_one_gpu_each_through_cuda_visible_devices(write_grid, monkeypatch):
    from benchmark.executors.local import _Worker
    from benchmark.grid import load_grid
    from benchmark.worker import WorkerSetup

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    setup = WorkerSetup(grid=load_grid(str(write_grid(**GRID))), out=Path("unused"), tracking_uri="sqlite:///unused.db")
    workers = [_Worker(slot, setup, gpu) for slot, gpu in enumerate(["3", "7"])]
    environments = _environments_of(workers)
    assert [env.get("CUDA_VISIBLE_DEVICES") for env in environments] == ["3", "7"]
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and all(not w.process.is_alive() for w in workers)


def test_jobs_per_gpu_puts_that_many_workers_on_each_gpu(write_grid, monkeypatch):
    from benchmark.executors import ExecutorOptions
    from benchmark.executors.local import _Worker, pool_size, slot_gpu
    from benchmark.grid import load_grid
    from benchmark.worker import WorkerSetup

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = ["3", "7"]
    size = pool_size(ExecutorOptions(jobs_per_gpu=2), gpus)
    assert size == 4 and pool_size(ExecutorOptions(), gpus) == 2 and pool_size(ExecutorOptions(workers=3), gpus) == 3
    setup = WorkerSetup(grid=load_grid(str(write_grid(**GRID))), out=Path("unused"), tracking_uri="sqlite:///unused.db")
    workers = [_Worker(slot, setup, slot_gpu(slot, gpus)) for slot in range(size)]
    environments = _environments_of(workers)
    assert sorted(env.get("CUDA_VISIBLE_DEVICES") for env in environments) == ["3", "3", "7", "7"]


def test_dataloader_workers_give_the_in_process_metrics(in_process, tmp_path):
    grid, expected = in_process
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                "--grid",
                str(grid),
                "--out",
                str(out),
                "--no-progress",
                "--set",
                "runtime.loader_workers=2",
                *ONE_THREAD,
            ]
        )
        == 0
    )
    assert _finished_metrics(out) == expected


def test_an_option_of_another_executor_is_refused_not_ignored(write_grid, tmp_path, capsys):
    grid = str(write_grid(**GRID))
    assert main(["run", "--grid", grid, "--out", str(tmp_path / "out"), "--executor", "slurm", "--workers", "4"]) == 2
    assert capsys.readouterr().err.strip() == "error: --workers applies to --executor local, not to --executor slurm"
    assert main(["run", "--grid", grid, "--out", str(tmp_path / "out"), "--ray-address", "auto"]) == 2
    assert capsys.readouterr().err.strip() == "error: --ray-address applies to --executor ray, not to --executor local"


def test_a_full_disk_in_a_pool_worker_ends_the_grid_in_one_line_and_a_rerun_resumes(
    faulty_plugins, write_grid, tmp_path, capsys
):
    out = tmp_path / "out"
    grid = write_grid(initialisations=["random", "disk_full_test"], fractions=[1.0])
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress", "--workers", "2", *ONE_THREAD]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "error: /shared/out/checkpoints/x.pt: could not write (No space left on device); nothing was left half-written"
    )
    status = {r.info.run_name: r.info.status for r in _runs(out)}
    assert status["pretrain/disk_full_test/phantom/axial_patches@32/seed0"] == "FAILED"
    assert "RUNNING" not in status.values()  # a job the ended grid interrupted is closed as KILLED
    assert (
        main(
            [
                "run",
                "--grid",
                str(write_grid(initialisations=["random"], fractions=[1.0])),
                "--out",
                str(out),
                "--no-progress",
                "--workers",
                "2",
                *ONE_THREAD,
            ]
        )
        == 0
    )
