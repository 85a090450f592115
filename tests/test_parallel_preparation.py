"""Preparation in worker processes: the same bytes as one process for phantoms and cache, errors as a loop raises
them, one progress bar, and the command line's --prep-workers."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import pytest
from tqdm import tqdm

from benchmark.cli import main
from ssl_medbench.core.errors import DataError
from ssl_medbench.core.parallel import map_in_processes, preparation_workers, set_preparation_workers
from ssl_medbench.datasets import DATASETS
from ssl_medbench.datasets.phantom_generators.abdominal_ct import CTPhantomSpec
from ssl_medbench.datasets.phantom_generators.brats import PhantomSpec
from ssl_medbench.datasets.phantom_generators.fetal_ultrasound import FetalPhantomSpec
from tests.brats_files import write_subject


@pytest.fixture
def workers():
    """Set the preparation workers for one test; one worker again afterwards."""
    yield set_preparation_workers
    set_preparation_workers(1)


def _digests(folder: Path, pattern: str = "*") -> dict[str, str]:
    """SHA-256 of every file under ``folder`` matching ``pattern``, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob(pattern))
        if path.is_file()
    }


def _square_or_fail(item: tuple[int, float, bool]) -> int:
    number, delay, fails = item
    time.sleep(delay)
    if fails:
        raise DataError(f"item {number} is bad")
    return number * number


def test_results_come_back_in_order_and_the_bar_counts_each_item(workers):
    workers(2)
    items = [(number, 0.05 * (5 - number), False) for number in range(6)]  # the first items finish last
    with tqdm(total=len(items), file=io.StringIO()) as bar:
        assert map_in_processes(_square_or_fail, items, bar) == [0, 1, 4, 9, 16, 25]
        assert bar.n == 6


def test_the_error_raised_is_that_of_the_first_failing_item_as_a_loop_raises_it(workers):
    items = [
        (0, 0.0, False),
        (1, 0.6, True),
        (2, 0.0, True),
        (3, 0.0, False),
    ]  # item 2 fails first, item 1 first in order
    for count in (1, 2):
        workers(count)
        with tqdm(total=len(items), file=io.StringIO()) as bar, pytest.raises(DataError, match="^item 1 is bad$"):
            map_in_processes(_square_or_fail, items, bar)


@pytest.mark.parametrize(
    "spec",
    [PhantomSpec.example(), CTPhantomSpec.example(), FetalPhantomSpec.example()],
    ids=["brats", "abdominal-ct", "fetal-ultrasound"],
)
def test_phantoms_generated_by_two_workers_are_the_bytes_one_writes(tmp_path, workers, spec):
    workers(1)
    serial = spec.generate(tmp_path / "serial")
    workers(2)
    parallel = spec.generate(tmp_path / "parallel")
    assert _digests(serial) == _digests(parallel) and len(_digests(serial)) > 6


@pytest.mark.parametrize("name", ["brats", "msd", "btcv", "fetal_planes_db"])
def test_a_cache_prepared_by_two_workers_holds_the_bytes_one_writes(tmp_path, workers, name):
    dataset_class = DATASETS.get(name)
    config = dataset_class.example_config(tmp_path / "data")
    digests = {}
    for count in (1, 2):
        workers(count)
        dataset = dataset_class(config, tmp_path / f"out{count}")
        dataset.prepare()
        arrays = _digests(tmp_path / f"out{count}" / "cache" / "preprocessed", "*.npy")  # records hold file times
        digests[count] = (arrays, dataset.content_hash())
    assert digests[1] == digests[2] and len(digests[1][0]) >= 6 * 2


def test_a_bad_file_met_by_a_worker_is_one_data_error_naming_it(tmp_path, workers):
    for index in range(4):
        write_subject(tmp_path / "data", f"S{index}", seed=index)
    flair = tmp_path / "data" / "S2" / "S2_flair.nii.gz"
    flair.write_bytes(flair.read_bytes()[:200])
    brats = DATASETS.get("brats")
    workers(2)
    with pytest.raises(DataError, match=r"S2_flair.nii.gz: (cannot decode|not a readable)"):
        brats(brats.Config(root=str(tmp_path / "data")), tmp_path / "out").prepare()


def test_the_command_line_sets_the_preparation_workers(tmp_path, workers, capsys):
    assert main(["run", "--grid", "smoke", "--out", str(tmp_path), "--dry-run", "--prep-workers", "3"]) == 0
    assert preparation_workers() == 3


class _UnpicklableError(Exception):
    def __init__(self, first: str, second: str):
        super().__init__(f"{first} and {second}")


def _raise_unpicklable(item: int) -> None:
    raise _UnpicklableError("one", "two")


def test_an_exception_that_cannot_travel_back_arrives_as_a_runtime_error_naming_it(workers):
    workers(2)
    with tqdm(total=2, file=io.StringIO()) as bar, pytest.raises(RuntimeError, match="_UnpicklableError: one and two"):
        map_in_processes(_raise_unpicklable, [0, 1], bar)


def _mark_after_a_while(item: tuple[Path, int]) -> None:
    folder, number = item
    time.sleep(0.3)
    (folder / str(number)).touch()


class _InterruptedBar(tqdm):
    def update(self, n=1):
        raise KeyboardInterrupt


def test_ctrl_c_while_workers_run_starts_no_further_item(tmp_path, workers):
    workers(2)
    items = [(tmp_path, number) for number in range(16)]
    with _InterruptedBar(total=len(items), file=io.StringIO()) as bar, pytest.raises(KeyboardInterrupt):
        map_in_processes(_mark_after_a_while, items, bar)
    time.sleep(0.5)
    assert len(list(tmp_path.iterdir())) <= 6  # the first two, the two running and at most the two queued


@pytest.mark.parametrize("count", [0, 2.5, True, "2"])
def test_preparation_workers_must_be_a_whole_number_from_1(workers, count):
    with pytest.raises(ValueError, match="whole number >= 1"):
        set_preparation_workers(count)
