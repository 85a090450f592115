"""Faults the suite survives: SIGKILL at chosen points, a changed config, a lost tracking store, a full disk;
and scientific validity: no leakage of test data, reproducibility, provenance on every run."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from mlflow.tracking import MlflowClient

import benchmark.jobs as jobs
import benchmark.tracking as tracking
from benchmark.cli import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
GRID = {"initialisations": ["random", "context_restoration"], "fractions": [1.0, 0.5]}
ARTIFACTS = {
    "pretrain": {"weights/manifest.json", "weights/encoder.pt", "weights/decoder.pt", "pretext/preview.png"},
    "finetune": {"per_subject_metrics.csv", "resolved_config.yaml", "test_subjects.txt"},
}


def _runs(out: Path):
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("grid-tiny")
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def _finished_metrics(out: Path) -> dict[str, dict[str, float]]:
    client, runs = _runs(out)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    names = [r.info.run_name for r in finished]
    assert len(names) == len(set(names)), f"a job FINISHED twice: {sorted(names)}"
    for run in finished:
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        artifacts |= {
            a.path for folder in ("weights", "pretext") for a in client.list_artifacts(run.info.run_id, folder)
        }
        missing = ARTIFACTS[run.data.tags["kind"]] - artifacts
        assert not missing, f"{run.info.run_name} is FINISHED without {missing}"
    return {r.info.run_name: r.data.metrics for r in finished}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_phantom_root) -> dict[str, dict[str, float]]:
    import yaml

    from tests.conftest import tiny_grid

    folder = tmp_path_factory.mktemp("uninterrupted")
    (folder / "grid.yaml").write_text(yaml.safe_dump(tiny_grid(tiny_phantom_root, **GRID)))
    assert main(["run", "--grid", str(folder / "grid.yaml"), "--out", str(folder / "out"), "--no-progress"]) == 0
    return _finished_metrics(folder / "out")


KILL_POINTS = {
    # SIGKILL in the middle of writing the third cache array (a partial temporary file is left behind)
    "while writing the cache": """
        import numpy as np
        real, calls = np.save, [0]
        def save(handle, array, *args, **kwargs):
            calls[0] += 1
            if calls[0] == 3:
                handle.write(b"\\x93NUMPY partial"); handle.flush(); os.kill(os.getpid(), signal.SIGKILL)
            return real(handle, array, *args, **kwargs)
        np.save = save
    """,
    # SIGKILL while the pretrain job writes its weights artifact
    "while writing the weights": """
        import torch
        real = torch.save
        def save(obj, path, *args, **kwargs):
            if "checkpoints" in str(path):
                return real(obj, path, *args, **kwargs)
            open(path, "wb").write(b"partial"); os.kill(os.getpid(), signal.SIGKILL)
        torch.save = save
    """,
    # SIGKILL while the second epoch's checkpoint of the pretrain job is written (the first one stays)
    "while writing a checkpoint": """
        import torch
        real, calls = torch.save, [0]
        def save(obj, path, *args, **kwargs):
            if "checkpoints" in str(path):
                calls[0] += 1
                if calls[0] == 2:
                    open(path, "wb").write(b"partial"); os.kill(os.getpid(), signal.SIGKILL)
            return real(obj, path, *args, **kwargs)
        torch.save = save
    """,
    # SIGKILL after the first epoch of the second finetune cell
    "during finetuning": """
        import benchmark.jobs as jobs
        real, calls = jobs.train, [0]
        def train(model, batches, loss_fn, schedule, on_epoch, description, **options):
            calls[0] += 1
            if calls[0] == 3:
                def killing(epoch, losses):
                    on_epoch(epoch, losses); os.kill(os.getpid(), signal.SIGKILL)
                return real(model, batches, loss_fn, schedule, killing, description, **options)
            return real(model, batches, loss_fn, schedule, on_epoch, description, **options)
        jobs.train = train
    """,
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_rerun_completes_with_the_uninterrupted_metrics(
    point, uninterrupted, write_grid, tmp_path, capsys
):
    grid, out = write_grid(**GRID), tmp_path / "out"
    script = (
        "import os, signal, sys\n"
        + textwrap.dedent(KILL_POINTS[point])
        + textwrap.dedent(f"""
        from benchmark.cli import main
        sys.exit(main(["run", "--grid", {str(grid)!r}, "--out", {str(out)!r}, "--no-progress", "--prep-workers", "1"]))
    """)
    )
    killed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    capsys.readouterr()
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 0
    assert _finished_metrics(out) == uninterrupted
    if point in (
        "during finetuning",
        "while writing a checkpoint",
    ):  # the killed job went on from its first epoch's checkpoint
        assert "after epoch 1" in capsys.readouterr().out
    assert list((out / "checkpoints").glob("*")) == []  # removed once their jobs FINISHED


def test_a_changed_setting_reruns_exactly_the_jobs_whose_key_changed(write_grid, tmp_path, capsys):
    grid, out = write_grid(**GRID), tmp_path / "out"
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress", "--set", "finetune.epochs=1"]) == 0
    assert (
        "4 jobs finished, 1 skipped" in capsys.readouterr().out
    )  # the pretrain job is reused, every finetune cell reruns
    client, runs = _runs(out)
    one_epoch = [r for r in runs if r.data.tags["kind"] == "finetune" and r.data.params["finetune.epochs"] == "1"]
    assert len(one_epoch) == 4 and all(
        len(client.get_metric_history(r.info.run_id, "train_loss")) == 1 for r in one_epoch
    )
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 0
    assert (
        "0 jobs finished, 5 skipped" in capsys.readouterr().out
    )  # back to 2 epochs: the 2-epoch results, never the 1-epoch ones


def test_unreachable_tracking_store_is_one_line_exit_2(write_grid, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    code = main(
        [
            "run",
            "--grid",
            str(write_grid(**GRID)),
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
            "--tracking-uri",
            "http://127.0.0.1:9",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: cannot reach the MLflow tracking store http://127.0.0.1:9")


def test_tracking_store_lost_mid_grid_ends_the_grid_and_nothing_unfinished_is_finished(
    write_grid, tmp_path, capsys, monkeypatch
):
    grid, out = write_grid(**GRID), tmp_path / "out"
    real, calls = tracking.mlflow.log_metrics, [0]

    def flaky(*args, **kwargs):
        calls[0] += 1
        if calls[0] > 2:  # the pretrain job's two epochs get through, then the server is gone
            raise requests.exceptions.ConnectionError(
                "HTTPConnectionPool: Max retries exceeded with url: /api/2.0/mlflow/runs/log-batch"
            )
        return real(*args, **kwargs)

    monkeypatch.setattr(tracking.mlflow, "log_metrics", flaky)
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and "lost the MLflow tracking store" in err and "run the same command again" in err
    )
    _, runs = _runs(out)
    status = {r.info.run_name: r.info.status for r in runs}
    assert status["pretrain/context_restoration/phantom/axial_patches@32/seed0"] == "FINISHED"
    assert [name for name, s in status.items() if s == "FINISHED" and name.startswith("finetune")] == []
    monkeypatch.setattr(tracking.mlflow, "log_metrics", real)
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 0
    assert "4 jobs finished, 1 skipped" in capsys.readouterr().out


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_caching_is_one_line_and_leaves_no_file(write_grid, tmp_path, capsys, monkeypatch):
    grid, out = write_grid(**GRID), tmp_path / "out"
    monkeypatch.setattr(np, "save", lambda handle, array, *a, **k: (handle.write(b"\x93NUMPY partial"), _disk_full()))
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and "could not write (No space left on device); nothing was left half-written" in err
    )
    assert list((out / "cache").rglob("*.npy")) == [] and list((out / "cache").rglob("*.tmp")) == []
    monkeypatch.undo()
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 0


def test_disk_full_while_exporting_weights_ends_the_grid_with_the_job_failed(write_grid, tmp_path, capsys, monkeypatch):
    grid, out = write_grid(**GRID), tmp_path / "out"
    real_save = torch.save
    monkeypatch.setattr(
        torch,
        "save",
        lambda obj, path, *a, **k: real_save(obj, path, *a, **k) if "checkpoints" in str(path) else _disk_full(),
    )
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "encoder.pt: could not write (No space left on device)" in err
    _, runs = _runs(out)
    assert {r.info.run_name: r.info.status for r in runs} == {
        "pretrain/context_restoration/phantom/axial_patches@32/seed0": "FAILED"
    }


def test_no_leakage_and_every_run_records_what_reproduces_it(write_grid, tmp_path, monkeypatch):
    """Pretraining loads only training subjects; a finetune cell trains on its labelled subjects and only evaluates on the test set."""
    loads: list[tuple[str, tuple[str, ...]]] = []
    real_load, real_pretrain, real_finetune = jobs.RunContext.load, jobs.run_pretrain, jobs.run_finetune
    current = ["?"]
    monkeypatch.setattr(
        jobs.RunContext,
        "load",
        lambda self, dataset, ids: loads.append((current[0], tuple(ids))) or real_load(self, dataset, ids),
    )

    def tracked(kind, real):
        def run(job, ctx, *args):
            current[0] = f"{kind}:{job.name}"
            return real(job, ctx, *args)

        return run

    import benchmark.worker as worker

    monkeypatch.setattr(worker, "run_pretrain", tracked("pretrain", real_pretrain))
    monkeypatch.setattr(worker, "run_finetune", tracked("finetune", real_finetune))
    out = tmp_path / "out"
    assert main(["run", "--grid", str(write_grid(**GRID)), "--out", str(out), "--no-progress", "--deterministic"]) == 0
    client, runs = _runs(out)
    test = set(
        client.download_artifacts(
            next(r for r in runs if r.data.tags["kind"] == "finetune").info.run_id, "test_subjects.txt", str(tmp_path)
        )
        and Path(tmp_path / "test_subjects.txt").read_text().split()
    )
    pretrain_loads = [ids for job, ids in loads if job.startswith("pretrain")]
    assert pretrain_loads and all(test.isdisjoint(ids) for ids in pretrain_loads)
    for run in (r for r in runs if r.data.tags["kind"] == "finetune"):
        cell_loads = [ids for job, ids in loads if job == f"finetune:{run.info.run_name}"]
        assert len(cell_loads) == 2
        labelled, evaluated = cell_loads
        assert test.isdisjoint(labelled) and len(labelled) == int(run.data.params["labelled_subjects"])
        assert set(evaluated) == test
    assert len({r.data.tags["test_subjects_sha256"] for r in runs}) == 1
    for run in runs:
        tags = run.data.tags
        assert {
            "torch_version",
            "timm_version",
            "python_version",
            "suite_version",
            "git_commit",
            "dataset_sha256",
            "job_key",
        } <= set(tags)
        assert tags["deterministic"] == "true"
        assert "resolved_config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_deterministic_flag_gives_the_same_metrics_on_cpu(uninterrupted, write_grid, tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--grid", str(write_grid(**GRID)), "--out", str(out), "--no-progress", "--deterministic"]) == 0
    assert _finished_metrics(out) == uninterrupted
    assert main(["run", "--grid", str(write_grid(**GRID)), "--out", str(tmp_path / "again"), "--no-progress"]) == 0
    assert not torch.are_deterministic_algorithms_enabled()
