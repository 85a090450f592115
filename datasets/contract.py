"""The contract every dataset meets, as reusable checks: shipped so third-party dataset plugins test themselves the same way.

The suite's own tests run every check on every registered dataset; a plugin's tests do::

    from ssl_medbench.datasets.contract import check_dataset

    def test_my_dataset_meets_the_contract(tmp_path):
        check_dataset(MyDataset, tmp_path)

or write the example once (:func:`write_example`) and parametrise over ``DATASET_CHECKS`` for one test per check.
The data come from the dataset itself: :meth:`Dataset.example_config` writes a tiny example in its real layout.
Each check prepares fresh instances in throw-away run folders and leaves the example as it found it, so all checks
share one example. A failed check raises AssertionError naming the dataset and the check.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssl_medbench.core.contracts import contract_check, describe_plugin, expect
from ssl_medbench.datasets import DATASETS
from ssl_medbench.datasets.base import Dataset
from ssl_medbench.datasets.splits import LabelBudget, Split

#: Label budgets (smallest first) and grid seeds the split and label-budget checks try.
BUDGETS = (LabelBudget.of_subjects(1), *(LabelBudget.of_fraction(f) for f in (0.25, 0.5, 1.0)))
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class DatasetExample:
    """A dataset's example files under ``folder`` and the ``Config`` that reads them."""

    folder: Path
    config: Any


def write_example(cls: type[Dataset], folder: Path) -> DatasetExample:
    """Let ``cls`` write its example into ``folder / "example"``; AssertionError naming the dataset if it cannot."""
    example = folder / "example"
    try:
        return DatasetExample(example, cls.example_config(example))
    except Exception as error:
        raise AssertionError(
            f"{describe_plugin(DATASETS, cls)} cannot write its example: {type(error).__name__}: {error}"
        ) from error


DatasetCheck = Callable[[type[Dataset], DatasetExample], None]

#: Every check a dataset must pass, by name (filled by :func:`_check` in definition order).
DATASET_CHECKS: dict[str, DatasetCheck] = {}


def _check(name: str) -> Callable[[DatasetCheck], DatasetCheck]:
    """Add a check to :data:`DATASET_CHECKS` under ``name``."""
    return contract_check(DATASET_CHECKS, DATASETS, name)


@contextmanager
def _prepared(cls: type[Dataset], config: Any) -> Iterator[Dataset]:
    """A fresh instance reading ``config``, prepared in a throw-away run folder."""
    with tempfile.TemporaryDirectory() as workdir:
        dataset = cls(config, Path(workdir))
        dataset.prepare()
        yield dataset


def _relocated(config: Any, old: Path, new: Path) -> Any:
    """``config`` with every string setting that is a path under ``old`` moved to the same place under ``new``."""
    changes = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, str) and value and Path(value).is_relative_to(old):
            changes[field.name] = str(new / Path(value).relative_to(old))
    return dataclasses.replace(config, **changes)


def _flip_a_byte(path: Path) -> None:
    """Change one byte of ``path`` that decoders skip, so the file still reads: the time stamp in a gzip header or
    in a zip member's header, else the last byte."""
    data = bytearray(path.read_bytes())
    offset = 4 if data[:2] == b"\x1f\x8b" else 10 if data[:4] == b"PK\x03\x04" else len(data) - 1
    data[offset] ^= 1
    path.write_bytes(bytes(data))


@_check("prepares")
def check_prepares(cls: type[Dataset], example: DatasetExample) -> None:
    """Its ``Config`` is a frozen dataclass; ``example_config`` returns one, and ``prepare()`` reads the example
    into at least two subjects with string ids."""
    expect(
        dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen,
        "Config must be a frozen dataclass",
    )
    expect(
        isinstance(example.config, cls.Config),
        f"example_config returned {type(example.config).__qualname__}, not {cls.__qualname__}.Config",
    )
    with _prepared(cls, example.config) as dataset:
        subjects = dataset.subject_ids()
    expect(len(subjects) >= 2, f"the example holds {len(subjects)} subject(s); a split needs at least 2")
    expect(all(isinstance(s, str) and s for s in subjects), f"subject ids must be non-empty strings: {subjects}")


@_check("subject_ids_sorted_and_unique")
def check_subject_ids_sorted_and_unique(cls: type[Dataset], example: DatasetExample) -> None:
    """``subject_ids()`` is sorted, without duplicates, and the same from a fresh instance."""
    with _prepared(cls, example.config) as dataset:
        subjects = list(dataset.subject_ids())
    expect(subjects == sorted(set(subjects)), f"subject_ids() is not sorted and unique: {subjects}")
    with _prepared(cls, example.config) as again:
        expect(again.subject_ids() == subjects, "subject_ids() differs between two instances on the same files")


@_check("split_is_patient_level")
def check_split_is_patient_level(cls: type[Dataset], example: DatasetExample) -> None:
    """``split()`` divides the subjects (one subject per patient) into non-empty train and test sets: disjoint,
    covering every subject, naming no other."""
    with _prepared(cls, example.config) as dataset:
        subjects, split = set(dataset.subject_ids()), dataset.split()
    expect(isinstance(split, Split), f"split() returned {type(split).__qualname__}, not a Split")
    train, test = set(split.train), set(split.test)
    expect(bool(train) and bool(test), f"train ({len(train)}) and test ({len(test)}) must both hold subjects")
    expect(not train & test, f"subjects in both train and test: {sorted(train & test)}")
    expect(not (train | test) - subjects, f"the split names unknown subjects: {sorted((train | test) - subjects)}")
    expect(not subjects - (train | test), f"subjects in neither train nor test: {sorted(subjects - (train | test))}")


@_check("split_is_fixed")
def check_split_is_fixed(cls: type[Dataset], example: DatasetExample) -> None:
    """The split is the same from a fresh instance and whatever label budget or seed was asked for before."""
    with _prepared(cls, example.config) as dataset:
        split = dataset.split()
        for seed in SEEDS:
            for budget in BUDGETS:
                dataset.labelled_subjects(budget, seed)
                expect(
                    dataset.split() == split,
                    f"the split changed after labelled_subjects({budget}, seed={seed}); "
                    "it must depend neither on the label budget nor on the seed",
                )
    with _prepared(cls, example.config) as again:
        expect(again.split() == split, "the split differs between two instances on the same files")


@_check("label_budgets_nested")
def check_label_budgets_nested(cls: type[Dataset], example: DatasetExample) -> None:
    """For every seed, the labelled subjects are training subjects, as many as the budget asks, nested (1 subject
    within 25 % within 50 % within 100 %, which is the whole training set) and the same from a fresh instance."""
    with _prepared(cls, example.config) as dataset:
        train = set(dataset.split().train)
        chosen = {(b, s): dataset.labelled_subjects(b, s) for s in SEEDS for b in BUDGETS}
    with _prepared(cls, example.config) as again:
        for (budget, seed), subjects in chosen.items():
            where = f"labelled_subjects({budget}, seed={seed})"
            expect(len(subjects) == budget.count(len(train)), f"{where} holds {len(subjects)} subjects")
            expect(bool(subjects), f"{where} is empty")
            expect(len(set(subjects)) == len(subjects), f"{where} repeats subjects: {subjects}")
            expect(set(subjects) <= train, f"{where} labels non-training subjects: {sorted(set(subjects) - train)}")
            expect(again.labelled_subjects(budget, seed) == subjects, f"{where} differs between two instances")
    for seed in SEEDS:
        smaller = set()
        for budget in BUDGETS:
            subjects = set(chosen[budget, seed])
            expect(
                smaller <= subjects,
                f"seed {seed}: budget {budget} leaves out {sorted(smaller - subjects)} of a smaller budget",
            )
            smaller = subjects
        expect(smaller == train, f"seed {seed}: 100% leaves out training subjects {sorted(train - smaller)}")


@_check("content_hash_stable")
def check_content_hash_stable(cls: type[Dataset], example: DatasetExample) -> None:
    """``content_hash()`` is a non-empty string, the same after preparing again and from a fresh instance."""
    with _prepared(cls, example.config) as dataset:
        digest = dataset.content_hash()
        expect(isinstance(digest, str) and bool(digest), f"content_hash() returned {digest!r}")
        dataset.prepare()
        expect(dataset.content_hash() == digest, "content_hash() changed when the same instance prepared again")
    with _prepared(cls, example.config) as again:
        expect(again.content_hash() == digest, "content_hash() differs between two instances on the same files")


@_check("content_hash_sees_a_changed_byte")
def check_content_hash_sees_a_changed_byte(cls: type[Dataset], example: DatasetExample) -> None:
    """On a copy of the example, changing one byte of its largest file (one the file's decoder skips, so the data
    still read the same) changes ``content_hash()``."""
    files = sorted((p for p in example.folder.rglob("*") if p.is_file()), key=lambda p: (-p.stat().st_size, p))
    expect(bool(files), f"the example folder {example.folder} holds no files")
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "copy"
        shutil.copytree(example.folder, copy)
        config = _relocated(example.config, example.folder, copy)
        with _prepared(cls, config) as dataset:
            before = dataset.content_hash()
        changed = copy / files[0].relative_to(example.folder)
        _flip_a_byte(changed)
        with _prepared(cls, config) as dataset:
            expect(
                dataset.content_hash() != before,
                f"content_hash() did not change when one byte of {changed.relative_to(copy)} changed",
            )


@_check("volumes_well_formed")
def check_volumes_well_formed(cls: type[Dataset], example: DatasetExample) -> None:
    """Every subject loads as a ``Volume`` with its id: finite float32 images (C, X, Y, Z) with one channel per
    name in ``channels``, uint8 labels (X, Y, Z), and a spacing of three positive, finite floats (mm)."""
    channels = cls.channels
    expect(
        isinstance(channels, tuple) and bool(channels) and all(isinstance(c, str) and c for c in channels),
        f"channels must be a non-empty tuple of names, got {channels!r}",
    )
    with _prepared(cls, example.config) as dataset:
        for subject in dataset.subject_ids():
            volume = dataset.load(subject)
            images, labels = np.asarray(volume.images), np.asarray(volume.labels)
            expect(volume.subject_id == subject, f"load({subject!r}) returned subject {volume.subject_id!r}")
            expect(
                images.dtype == np.float32 and images.ndim == 4,
                f"{subject}: images {images.dtype} {images.shape}, expected float32 (C, X, Y, Z)",
            )
            expect(
                images.shape[0] == len(channels),
                f"{subject}: {images.shape[0]} image channels, but channels names {len(channels)}: {channels}",
            )
            expect(bool(np.isfinite(images).all()), f"{subject}: images hold NaN or infinite values")
            expect(
                labels.dtype == np.uint8 and labels.shape == images.shape[1:],
                f"{subject}: labels {labels.dtype} {labels.shape}, expected uint8 {images.shape[1:]}",
            )
            spacing = volume.spacing
            expect(
                len(spacing) == 3
                and all(isinstance(v, (float, np.floating)) and math.isfinite(v) and v > 0 for v in spacing),
                f"{subject}: spacing {spacing!r}, expected three positive floats (mm)",
            )


@_check("classes_consistent")
def check_classes_consistent(cls: type[Dataset], example: DatasetExample) -> None:
    """``class_names`` are unique non-empty strings. A 2D image dataset gives each slice a class index into them
    (``slice_classes``, integers, one per slice) and all-zero labels; a label map uses no value beyond them."""
    with _prepared(cls, example.config) as dataset:
        names = dataset.class_names
        expect(
            isinstance(names, tuple) and all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names),
            f"class_names must be a tuple of unique names, got {names!r}",
        )
        for subject in dataset.subject_ids():
            volume = dataset.load(subject)
            labels = np.asarray(volume.labels)
            if volume.slice_classes is None:
                expect(
                    not names or int(labels.max(initial=0)) <= len(names),
                    f"{subject}: label value {labels.max()} beyond the {len(names)} class_names {names}",
                )
                continue
            classes = np.asarray(volume.slice_classes)
            depth = np.shape(volume.images)[-1]
            expect(
                classes.shape == (depth,) and np.issubdtype(classes.dtype, np.integer),
                f"{subject}: slice_classes {classes.dtype} {classes.shape}, expected one integer class per slice ({depth},)",
            )
            expect(
                bool(names) and classes.min() >= 0 and classes.max() < len(names),
                f"{subject}: slice_classes {sorted(set(classes.tolist()))} outside the {len(names)} class_names {names}",
            )
            expect(not labels.any(), f"{subject}: a 2D image dataset's labels must be all zero")


def check_dataset(cls: type[Dataset], folder: Path) -> None:
    """Write the example of ``cls`` under ``folder`` and run every check of :data:`DATASET_CHECKS` on it; the first
    failure raises AssertionError."""
    expect(isinstance(cls, type) and issubclass(cls, Dataset), f"{cls!r} is not a Dataset subclass")
    example = write_example(cls, folder)
    for check in DATASET_CHECKS.values():
        check(cls, example)
