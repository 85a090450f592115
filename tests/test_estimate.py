"""The plan's cost estimate: within a factor of two of a small grid's measured job time on this machine, calibrated
once and read from its cache, replaced by the store's durations once jobs have finished; and the long-run warning,
which asks on a terminal only."""

from __future__ import annotations

import builtins
import json
import re
import sys

import pytest
import torch
from mlflow.tracking import MlflowClient

import benchmark.estimate as estimate_module
from benchmark.cli import main

TOTAL = re.compile(r"total: (\d+) s of compute")
#: Enough steps that the jobs train for longer than they take to start: what the calibration measures.
SMALL_GRID = {
    "initialisations": ["random", "context_restoration", "rotation"],
    "fractions": [1.0],
    "pretrain": {"epochs": 2, "steps_per_epoch": 40, "batch_size": 8},
    "finetune": {"epochs": 2, "steps_per_epoch": 40, "batch_size": 8},
}


def _total_seconds(text: str) -> int:
    found = TOTAL.search(text)
    assert found, text
    return int(found.group(1))


def _job_seconds(out) -> float:
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("grid-tiny")
    runs = client.search_runs([experiment.experiment_id])
    return sum((run.info.end_time - run.info.start_time) / 1000 for run in runs)


@pytest.mark.slow
def test_the_estimate_is_within_a_factor_of_two_of_a_small_grids_measured_job_time(write_grid, tmp_path, capsys):
    grid, out = write_grid(**SMALL_GRID), tmp_path / "out"
    assert main(["run", "--grid", str(grid), "--out", str(out), "--dry-run", "--no-progress"]) == 0
    dry = capsys.readouterr().out
    assert "estimate: 5 jobs from a calibration on cpu (training steps only" in dry
    estimated = _total_seconds(dry)
    cache = out / "calibration" / f"{estimate_module.device_label(torch.device('cpu'))}.json"
    assert len(json.loads(cache.read_text())) == 3  # two pretext networks and the segmentation network, timed once:
    # the second plan times nothing
    assert main(["run", "--grid", str(grid), "--out", str(out), "--dry-run", "--no-progress"]) == 0
    again = capsys.readouterr().out
    assert "calibrating:" not in again and _total_seconds(again) == estimated

    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress"]) == 0
    measured = _job_seconds(out)
    capsys.readouterr()
    print(f"estimated {estimated} s of compute, measured {measured:.1f} s of job time", file=sys.stderr)
    assert 0.5 <= estimated / measured <= 2.0

    # once jobs finished, their durations replace the calibration: two seeds cost twice what one measured
    assert (
        main(["run", "--grid", str(grid), "--out", str(out), "--dry-run", "--no-progress", "--set", "seeds=[0, 1]"])
        == 0
    )
    resumed = capsys.readouterr().out  # a dry run reads no data: it cannot tell which of its jobs finished
    assert "estimate: 10 jobs from the durations of finished runs in the store" in resumed
    assert abs(_total_seconds(resumed) - 2 * measured) <= 0.5 * 2 * measured
    assert main(["run", "--grid", str(grid), "--out", str(out), "--no-progress", "--set", "seeds=[0, 1]"]) == 0
    assert "(5 jobs already FINISHED in the store are skipped)" in capsys.readouterr().out


@pytest.fixture
def long_grid(monkeypatch, write_grid):
    """A tiny grid that the estimate calls long: every grid is, above 0 hours."""
    monkeypatch.setattr(estimate_module, "LONG_RUN_HOURS", 0.0)
    return write_grid(initialisations=["random"], fractions=[1.0])


def test_a_long_grid_is_flagged_and_without_a_terminal_runs_without_asking(long_grid, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    monkeypatch.setattr(builtins, "input", lambda prompt="": pytest.fail("asked without a terminal"))
    assert main(["run", "--grid", str(long_grid), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "warning: about 0.0 h on cpu, more than 0 h: run it on a cluster (--executor slurm or ray" in printed
    assert "1 jobs finished" in printed


def test_on_a_terminal_a_long_grid_waits_for_a_yes(long_grid, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    asked = []
    monkeypatch.setattr(builtins, "input", lambda prompt="": asked.append(prompt) or "n")
    out = tmp_path / "out"
    assert main(["run", "--grid", str(long_grid), "--out", str(out), "--no-progress"]) == 2
    assert asked == ["run it here anyway? [y/N] "]
    assert "error: not started; pass --yes to run a long grid here without being asked" in capsys.readouterr().err
    assert not (out / "mlflow.db").exists()  # nothing ran

    monkeypatch.setattr(builtins, "input", lambda prompt="": pytest.fail("asked despite --yes"))
    assert main(["run", "--grid", str(long_grid), "--out", str(out), "--no-progress", "--yes"]) == 0


def test_store_durations_are_medians_per_signature_and_ignore_unfinished_and_superseded_runs(tmp_path):
    from ssl_medbench.reports.runs import load_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("grid-hand", artifact_location=(tmp_path / "a").as_uri())
    signature = {
        "kind": "finetune",
        "initialisation": "random",
        "downstream_task": "seg",
        "dataset": "d",
        "device": "cpu",
    }
    for seconds, status, extra in [
        (10, "FINISHED", {}),
        (20, "FINISHED", {"protocol": "finetune"}),
        (60, "FINISHED", {}),
        (999, "FINISHED", {"superseded": "lacks weights"}),
        (None, "RUNNING", {}),  # no end time: the column mixes times and None
        (500, "FINISHED", {"device": "cuda:0"}),  # another device type
    ]:
        run = client.create_run(experiment, start_time=1_000_000, tags=signature | extra)
        if seconds is not None:
            client.set_terminated(run.info.run_id, status, end_time=1_000_000 + seconds * 1000)
    durations = estimate_module._store_durations(load_runs(uri, "grid-hand"))
    assert durations == {
        ("finetune", "random", "seg", "finetune", "d", "cpu"): 20.0,
        ("finetune", "random", "seg", "finetune", "d", "cuda"): 500.0,
    }


def test_a_store_whose_only_run_is_unfinished_has_no_durations(tmp_path):
    from ssl_medbench.reports.runs import load_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("grid-hand", artifact_location=(tmp_path / "a").as_uri())
    client.create_run(experiment, tags={"kind": "pretrain", "initialisation": "autoencoder"})  # a SIGKILLed job's
    assert estimate_module._store_durations(load_runs(uri, "grid-hand")) == {}


def test_a_defect_of_the_estimate_is_one_warning_and_the_grid_goes_on(write_grid, tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(estimate_module, "estimate", broken)
    grid = write_grid(initialisations=["random"], fractions=[1.0])
    assert main(["run", "--grid", str(grid), "--out", str(tmp_path / "out"), "--dry-run", "--no-progress"]) == 0
    assert (
        "warning: no cost estimate (ZeroDivisionError: division by zero); please report it" in capsys.readouterr().out
    )


def test_an_unreadable_calibration_cache_is_timed_again_and_rewritten(write_grid, tmp_path, capsys):
    grid, out = write_grid(initialisations=["random"], fractions=[1.0]), tmp_path / "out"
    cache = out / "calibration" / f"{estimate_module.device_label(torch.device('cpu'))}.json"
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert main(["run", "--grid", str(grid), "--out", str(out), "--dry-run", "--no-progress"]) == 0
    assert (
        "is not a calibration this suite wrote; timing the networks again and rewriting it" in capsys.readouterr().out
    )
    assert len(json.loads(cache.read_text())) == 1  # the segmentation network, timed again
