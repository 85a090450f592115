"""Where each cell's randomness comes from, end to end: the test split from the dataset's ``split_seed`` alone (the
same for every seed of a grid), and the pretext corruptions and training augmentations from their own stream of the
job seed (``benchmark.jobs.job_seeds``), not the batch-sampling stream. A bug in either would change published numbers
without failing anything else."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from benchmark.batches import step_seed
from benchmark.cli import main
from benchmark.jobs import job_seeds
from ssl_medbench.datasets.augmentation import BatchAugmentation
from ssl_medbench.datasets.splits import split_subjects
from ssl_medbench.pretext_tasks.context_restoration import ContextRestoration
from tests.conftest import tiny_grid

pytestmark = pytest.mark.slow
TEST_FRACTION = 0.25


def _split_seed_unlike_the_grid_seeds(subjects: list[str], seeds: list[int]) -> int:
    """A ``split_seed`` whose test set differs from the one each grid seed would draw: a split taken from the cell's
    seed instead would show."""
    drawn = {split_subjects(subjects, TEST_FRACTION, seed).test for seed in seeds}
    return next(s for s in range(100) if split_subjects(subjects, TEST_FRACTION, s).test not in drawn)


def _artifact(client, run, path: str, folder: Path) -> Path:
    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id,
            artifact_path=path,
            dst_path=str(folder / run.info.run_id),
            tracking_uri=client.tracking_uri,
        )
    )


def _finetune_runs(out: Path):
    client = mlflow.tracking.MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("grid-tiny")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    return client, [run for run in runs if run.data.tags["kind"] == "finetune" and run.info.status == "FINISHED"]


def test_every_seed_of_a_grid_is_tested_on_the_split_of_split_seed(tiny_phantom_root, tmp_path):
    seeds = [0, 1]
    subjects = sorted(path.name for path in tiny_phantom_root.iterdir() if path.is_dir())
    split_seed = _split_seed_unlike_the_grid_seeds(subjects, seeds)
    expected = split_subjects(subjects, TEST_FRACTION, split_seed)
    grid = tiny_grid(tiny_phantom_root, seeds=seeds, initialisations=["random"], fractions=[0.5])
    grid["datasets"]["phantom"] |= {"split_seed": split_seed, "test_fraction": TEST_FRACTION}
    path, out = tmp_path / "grid.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(grid))
    assert main(["run", "--grid", str(path), "--out", str(out), "--no-progress"]) == 0

    client, runs = _finetune_runs(out)
    assert sorted(int(run.data.tags["seed"]) for run in runs) == seeds
    for run in runs:
        tested = _artifact(client, run, "test_subjects.txt", tmp_path).read_text().split()
        scored = pd.read_csv(_artifact(client, run, "per_subject_metrics.csv", tmp_path))["subject_id"].tolist()
        labelled = _artifact(client, run, "labelled_subjects.txt", tmp_path).read_text().split()
        assert tested == sorted(scored) == list(expected.test)
        assert run.data.tags["test_subjects_sha256"] == expected.test_hash()
        assert labelled and set(labelled) <= set(expected.train)


def test_corruptions_and_augmentations_draw_from_their_own_stream_of_the_job_seed(
    tiny_phantom_root, tmp_path, monkeypatch
):
    seed, steps = 3, 2 * 3  # the tiny grid: 2 epochs of 3 steps, for pretraining and finetuning alike
    drawn: dict[str, list[int]] = {"corruption": [], "augmentation": []}
    corrupt, augment = ContextRestoration.make_batch, BatchAugmentation.__call__

    def recorded_corruption(self, images, generator):
        drawn["corruption"].append(generator.initial_seed())
        return corrupt(self, images, generator)

    def recorded_augmentation(self, images, targets, generator, target_geometry):
        drawn["augmentation"].append(generator.initial_seed())
        return augment(self, images, targets, generator, target_geometry)

    monkeypatch.setattr(ContextRestoration, "make_batch", recorded_corruption)
    monkeypatch.setattr(BatchAugmentation, "__call__", recorded_augmentation)
    grid = tiny_grid(
        tiny_phantom_root, seeds=[seed], initialisations=["context_restoration", "random_augmentation"], fractions=[1.0]
    )
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert main(["run", "--grid", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0

    _, sampling, own = job_seeds(seed)
    assert drawn["corruption"][:steps] == [step_seed(own, step) for step in range(steps)]
    assert drawn["augmentation"] == [step_seed(own, step) for step in range(steps)]
    assert not {step_seed(sampling, step) for step in range(steps)} & {*drawn["corruption"], *drawn["augmentation"]}
