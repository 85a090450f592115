"""Preparation in worker processes: the same bytes as one process for phantoms and cache, errors as a loop raises
them, one progress bar, and the command line's --prep-workers."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from tqdm import tqdm

import ssl_medbench.datasets.brats as brats_module
import ssl_medbench.datasets.phantom_generators.abdominal_ct as ct_phantoms
import ssl_medbench.datasets.phantom_generators.brats as brats_phantoms
import ssl_medbench.datasets.phantom_generators.fetal_ultrasound as fetal_phantoms
from benchmark.cli import main
from ssl_medbench.core.errors import DataError, UserError
from ssl_medbench.core.parallel import map_in_processes, preparation_workers, set_preparation_workers
from ssl_medbench.datasets import DATASETS
from ssl_medbench.datasets.phantom_generators.abdominal_ct import CTPhantomSpec
from ssl_medbench.datasets.phantom_generators.brats import PhantomSpec
from ssl_medbench.datasets.phantom_generators.fetal_ultrasound import FetalPhantomSpec
from tests.brats_files import write_subject

ROOT = Path(__file__).resolve().parents[1]


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


def _fail_first_or_mark(item: tuple[int, Path]) -> int:
    number, folder = item
    if number == 0:
        raise DataError("item 0 is bad")
    time.sleep(0.2)
    (folder / str(number)).touch()
    return os.getpid()


def test_items_after_a_failure_are_not_started_and_the_work_runs_in_other_processes(tmp_path, workers):
    workers(2)
    with tqdm(total=3, file=io.StringIO()) as bar:
        process_ids = map_in_processes(_fail_first_or_mark, [(number, tmp_path) for number in (1, 2, 3)], bar)
    assert os.getpid() not in process_ids
    for marker in tmp_path.iterdir():
        marker.unlink()
    items = [(number, tmp_path) for number in range(12)]
    with tqdm(total=len(items), file=io.StringIO()) as bar, pytest.raises(DataError, match="item 0 is bad"):
        map_in_processes(_fail_first_or_mark, items, bar)
    time.sleep(0.5)
    assert len(list(tmp_path.iterdir())) <= 4  # the pool queues workers + 1 calls ahead; the rest are cancelled


def test_each_phantom_written_by_a_worker_is_the_subject_of_its_own_index(tmp_path, workers):
    """Comparing two worker counts cannot see a worker given the wrong index: compare with the generators."""
    workers(2)
    brats_spec, ct_spec, fetal_spec = PhantomSpec.example(), CTPhantomSpec.example(), FetalPhantomSpec.example()
    brats_root = brats_spec.generate(tmp_path / "brats")
    images, _ = brats_phantoms.make_subject(brats_phantoms.load_tissue_maps(brats_spec.voxel_size_mm), brats_spec, 1)
    for modality, image in images.items():
        written = nib.load(brats_root / "BraTS2021_00001" / f"BraTS2021_00001_{modality}.nii.gz")
        assert np.array_equal(np.asarray(written.dataobj), image)
    ct_root = ct_spec.generate(tmp_path / "ct")
    hounsfield, labels = ct_phantoms.make_subject(ct_spec, 1)
    assert np.array_equal(np.asarray(nib.load(ct_root / "labelsTr" / "abdomen_001.nii.gz").dataobj), labels)
    training = json.loads((ct_root / "dataset.json").read_text())["training"]
    assert [case["image"] for case in training] == [
        f"./imagesTr/abdomen_{i:03d}.nii.gz" for i in range(ct_spec.n_subjects)
    ]
    fetal_root = fetal_spec.generate(tmp_path / "fetal")
    for number, row in enumerate(fetal_phantoms._plan(fetal_spec)):
        patient = np.random.default_rng([fetal_spec.seed, 2, int(row["Patient_num"])])
        expected = fetal_phantoms.make_image(
            str(row["Plane"]),
            str(row["Brain_plane"]),
            fetal_spec,
            np.random.default_rng([fetal_spec.seed, 1, number]),
            fetal_phantoms.examination(str(row["US_Machine"]), patient),
        )
        written = Image.open(fetal_root / fetal_phantoms.IMAGES_FOLDER / f"{row['Image_name']}.png").convert("L")
        assert np.array_equal(np.asarray(written), expected)


def test_each_stale_subject_is_decoded_once(tmp_path, monkeypatch, workers):
    for index in range(2):
        write_subject(tmp_path / "data", f"S{index}", seed=index)
    decoded = []
    write = brats_module._CachedSubject.write

    def counted(entry, subject):
        decoded.append(subject.subject_id)
        write(entry, subject)

    monkeypatch.setattr(brats_module._CachedSubject, "write", counted)
    brats = DATASETS.get("brats")
    brats(brats.Config(root=str(tmp_path / "data"), test_fraction=0.5), tmp_path / "out").prepare()
    assert decoded == ["S0", "S1"]


def _die_on_item_1(item: int) -> int:
    if item == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # what the out-of-memory killer does
    time.sleep(0.1)
    return item


def test_a_worker_killed_mid_item_is_one_error_naming_the_cause(workers):
    workers(2)
    with (
        tqdm(total=4, file=io.StringIO()) as bar,
        pytest.raises(UserError, match="worker died abruptly .* out of memory"),
    ):
        map_in_processes(_die_on_item_1, [0, 1, 2, 3], bar)


def test_a_preparation_killed_inside_a_worker_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path, workers):
    """SIGKILL in a worker while it writes the third cache array (a partial hidden temporary file is left behind,
    never read): the run ends with one error line; the next run decodes what is missing and the cache's arrays are
    the uninterrupted one's."""
    root = PhantomSpec.example().generate(tmp_path / "data")
    brats = DATASETS.get("brats")
    workers(1)
    brats(brats.Config(root=str(root)), tmp_path / "reference").prepare()
    script = f"""
import os, signal
import numpy as np
from ssl_medbench.core.parallel import set_preparation_workers
from ssl_medbench.datasets import DATASETS
real, calls = np.save, [0]
def save(handle, array, *args, **kwargs):
    calls[0] += 1
    if calls[0] == 3:
        handle.write(b"partial")
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    real(handle, array, *args, **kwargs)
np.save = save
set_preparation_workers(2)
brats = DATASETS.get("brats")
brats(brats.Config(root={str(root)!r}), __import__("pathlib").Path({str(tmp_path / "out")!r})).prepare()
"""
    killed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert killed.returncode == 1 and "worker died abruptly" in killed.stderr, killed.stderr[-2000:]
    workers(2)
    brats(brats.Config(root=str(root)), tmp_path / "out").prepare()
    cache = "cache/preprocessed"
    assert _digests(tmp_path / "out" / cache, "*.npy") == _digests(tmp_path / "reference" / cache, "*.npy")
