"""Every registered dataset meets the contract of ``datasets.contract`` (built-ins and installed plugins alike), and
the contract catches a dataset plugin that breaks it, by the plugin's name and the failing check."""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable

import pytest

from ssl_medbench.datasets import DATASETS
from ssl_medbench.datasets.contract import DATASET_CHECKS, DatasetExample, check_dataset, write_example

#: Test plugin name -> (entry-point target, the check it fails first, a fragment of that check's message).
BROKEN = {
    "leaky_split_test": ("tests.plugins.broken_dataset:LeakySplit", "split_is_patient_level", "in both train and test"),
    "seeded_split_test": ("tests.plugins.broken_dataset:SeededSplit", "split_is_fixed", "the split changed after"),
    "blind_hash_test": (
        "tests.plugins.broken_dataset:BlindHash",
        "content_hash_sees_a_changed_byte",
        "content_hash() did not change",
    ),
    "float64_images_test": ("tests.plugins.broken_dataset:Float64Images", "volumes_well_formed", "images float64"),
    "unnested_fractions_test": (
        "tests.plugins.broken_dataset:UnnestedFractions",
        "label_budgets_nested",
        "of a smaller budget",
    ),
    "partial_full_fraction_test": (
        "tests.plugins.broken_dataset:PartialFullFraction",
        "label_budgets_nested",
        "labelled_subjects(100%, seed=0) holds",
    ),
    "per_instance_fractions_test": (
        "tests.plugins.broken_dataset:PerInstanceFractions",
        "label_budgets_nested",
        "differs between two instances",
    ),
    "mutable_config_test": ("tests.plugins.broken_dataset:MutableConfig", "prepares", "must be a frozen dataclass"),
    "drops_a_subject_test": (
        "tests.plugins.broken_dataset:DropsASubject",
        "split_is_patient_level",
        "subjects in neither train nor test",
    ),
    "int64_labels_test": ("tests.plugins.broken_dataset:Int64Labels", "volumes_well_formed", "labels int64"),
}

#: A minimal third-party dataset that meets the contract.
NPY_FOLDER = "tests.plugins.npy_folder:NpyFolder"


@pytest.fixture(scope="session")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], DatasetExample]:
    """Each dataset's example, written once per session: the checks leave it as they found it."""
    written: dict[str, DatasetExample] = {}

    def example(name: str) -> DatasetExample:
        if name not in written:
            written[name] = write_example(DATASETS.get(name), tmp_path_factory.mktemp(name))
        return written[name]

    return example


def test_every_built_in_layout_and_phantom_is_registered():
    layouts = {"brats", "fetal_planes_db", "medmnist", "msd", "btcv"}
    assert layouts | {"brats_phantom", "fetal_planes_phantom", "abdominal_ct_phantom"} <= set(DATASETS.names())


@pytest.mark.parametrize("check", list(DATASET_CHECKS))
@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_meets_the_contract(name, check, examples):
    DATASET_CHECKS[check](DATASETS.get(name), examples(name))


@pytest.fixture
def plugin_entry_points(monkeypatch):
    """Register the test datasets through patched entry points, as an installed distribution would."""
    group = DATASETS.entry_point_group
    targets = {name: target for name, (target, _, _) in BROKEN.items()} | {"npy_folder_test": NPY_FOLDER}
    points = [importlib.metadata.EntryPoint(name, target, group) for name, target in targets.items()]
    real = importlib.metadata.entry_points
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda **kw: [p for p in points if p.group == kw.get("group")] if "group" in kw else real(**kw),
    )
    monkeypatch.setattr(DATASETS, "_entry_points_loaded", False)
    monkeypatch.setattr(DATASETS, "_items", dict(DATASETS._items))
    monkeypatch.setattr(DATASETS, "_origins", dict(DATASETS._origins))


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_contract_catches_a_broken_plugin_by_name_and_check(name, plugin_entry_points, tmp_path):
    cls, (_, failing, reason) = DATASETS.get(name), BROKEN[name]
    expected = rf"'{failing}': .*{re.escape(reason)}"
    with pytest.raises(
        AssertionError, match=rf"^dataset '{name}' \({cls.__qualname__}\) fails contract check {expected}"
    ):
        check_dataset(cls, tmp_path)
    with pytest.raises(AssertionError, match=expected):
        DATASET_CHECKS[failing](cls, write_example(cls, tmp_path / "again"))


def test_a_minimal_third_party_plugin_meets_the_contract(plugin_entry_points, tmp_path):
    check_dataset(DATASETS.get("npy_folder_test"), tmp_path)
