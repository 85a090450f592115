"""The planner: job keys (a stable encoding, pinned by golden values), the jobs and cells of a grid, the pretrain jobs
that datasets with identical content share, the plan's description and the label-fraction check."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from benchmark.grid import GridConfig, KnnConfig, TrainConfig
from benchmark.planner import KEY_VERSION, check_label_budgets, job_key, plan_grid
from ssl_medbench.core.errors import ConfigError
from ssl_medbench.datasets.base import Dataset, Volume
from ssl_medbench.datasets.splits import LabelBudget, Split
from ssl_medbench.datasets.views import AxialPatches, OrthogonalSlices
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from tests.plugins.whole_tumour import WholeTumourSegmentation


def _grid(**changes) -> GridConfig:
    """A small grid on one BraTS-type dataset: segmentation (axial patches, takes a decoder) and localisation (slices
    along three axes, encoder only), so the autoencoder's ``decoder: auto`` differs between its two pretrain jobs."""
    fields = {
        "name": "keys",
        "seeds": (0,),
        "fractions": (0.5,),
        "initialisations": ("random", "autoencoder"),
        "downstream_tasks": ("brats_segmentation", "abdominal_organ_localisation"),
        "datasets": {"brats": {"type": "brats_phantom"}},
        "downstream": {
            "brats_segmentation": {"dataset": "brats", "patch_size": 32},
            "abdominal_organ_localisation": {"dataset": "brats", "slice_size": 32},
        },
    }
    return GridConfig(**{**fields, **changes})


def test_job_key_of_a_fixed_payload_is_pinned():
    """Golden value: stored results are found by this key, so any change in how a payload is encoded (key version,
    key order, view and dataclass encoding, length) orphans every stored result. A deliberate change must bump
    KEY_VERSION and update the value here."""
    payload = {"seed": 3, "kind": "pretrain", "view": AxialPatches(32), "schedule": TrainConfig(epochs=2)}
    assert KEY_VERSION == 4
    assert job_key(payload) == "b9f9c470d3d4f882073cead5"
    assert job_key(dict(reversed(payload.items()))) == job_key(payload)  # independent of the payload's order


def test_job_keys_tell_view_kinds_of_one_size_apart_and_refuse_what_they_cannot_encode():
    assert job_key({"view": AxialPatches(64)}) != job_key({"view": OrthogonalSlices(64)})
    assert re.fullmatch("[0-9a-f]{24}", job_key({"view": OrthogonalSlices(64)}))
    with pytest.raises(TypeError, match=r"cannot put <object object at .*> in a job key"):
        job_key({"seed": object()})


def test_job_keys_of_a_small_grid_are_pinned():
    """Golden values: every pretrain job and finetune cell of a fixed small grid, by name. A change in the key payload
    (a field renamed, added or dropped, a value encoded differently) orphans every stored result: a deliberate
    change must bump KEY_VERSION and update the values here. A changed default of a plugin or a schedule also
    changes them, rightly (the jobs it runs differ): update the values and say so in the commit."""
    plan = plan_grid(_grid(), {"brats": "v1"})
    keys = {job.name: job.key for job in (*plan.pretrain_jobs, *plan.finetune_cells)}
    assert keys == {
        "pretrain/autoencoder/brats/axial_patches@32/seed0": "5a4390bc9b24fe00d6bb4bbf",
        "pretrain/autoencoder/brats/slices_xyz@32/seed0": "b0eac100826f14af3a835195",
        "finetune/random/brats_segmentation/0.5/seed0": "2a03e275e0a592743a5bd57d",
        "finetune/autoencoder/brats_segmentation/0.5/seed0": "5e2e824dd09a0e2b2d793e05",
        "finetune/random/abdominal_organ_localisation/0.5/seed0": "4f71003203c6bf5842f854fa",
        "finetune/autoencoder/abdominal_organ_localisation/0.5/seed0": "72b8a5d756a8716344cc3a91",
    }


def test_cells_cover_the_grid_and_start_from_the_pretrain_job_of_their_dataset_view_and_seed():
    grid = _grid(seeds=(4, 7), fractions=(1.0, 0.25))
    plan = plan_grid(grid, {"brats": "v1"})
    jobs = {(job.initialisation, job.dataset, job.view, job.seed): job for job in plan.pretrain_jobs}
    assert sorted((init, view.name, seed) for init, _, view, seed in jobs) == [
        ("autoencoder", "axial_patches@32", 4),
        ("autoencoder", "axial_patches@32", 7),
        ("autoencoder", "slices_xyz@32", 4),
        ("autoencoder", "slices_xyz@32", 7),
    ]
    assert {job.dataset for job in jobs.values()} == {"brats"}
    assert plan.pretrain_count_line(grid).startswith(
        "pretrain jobs: 4 = 1 initialisations with pretraining x 2 dataset views x 2 seeds, each shared by 2 label"
    )
    cells = {(c.initialisation, c.downstream_task, c.dataset, c.budget, c.seed): c for c in plan.finetune_cells}
    assert sorted(cells) == sorted(
        (init, task, "brats", LabelBudget.of_fraction(fraction), seed)
        for init in grid.initialisations
        for task in grid.downstream_tasks
        for fraction in grid.fractions
        for seed in grid.seeds
    )
    for (init, task, dataset, _, seed), cell in cells.items():
        job = jobs.get((init, dataset, grid.input_view(task), seed))
        assert cell.pretrain_key == (job.key if init == "autoencoder" else None)


@pytest.fixture
def whole_tumour(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test plugin's whole-tumour segmentation, registered for this test only: a second task that takes axial
    patches, like brats_segmentation."""
    monkeypatch.setattr(DOWNSTREAM_TASKS, "_items", dict(DOWNSTREAM_TASKS._items))
    monkeypatch.setattr(DOWNSTREAM_TASKS, "_origins", dict(DOWNSTREAM_TASKS._origins))
    DOWNSTREAM_TASKS.register("whole_tumour")(WholeTumourSegmentation)


def test_datasets_with_identical_content_and_view_share_one_pretrain_job(whole_tumour):
    """Two grid datasets of one content version, each under a task that takes 32-pixel axial patches: one jigsaw job
    per seed serves both tasks, and the count line says why it is not one per dataset."""
    grid = _grid(
        seeds=(0, 1),
        initialisations=("random", "jigsaw"),
        downstream_tasks=("brats_segmentation", "whole_tumour"),
        datasets={"brats": {"type": "brats_phantom"}, "copy": {"type": "brats_phantom"}},
        downstream={"brats_segmentation": {"dataset": "brats", "patch_size": 32}, "whole_tumour": {"dataset": "copy"}},
    )
    shared = plan_grid(grid, {"brats": "v1", "copy": "v1"})
    assert sorted((job.initialisation, job.seed, job.view) for job in shared.pretrain_jobs) == [
        ("jigsaw", 0, AxialPatches(32)),
        ("jigsaw", 1, AxialPatches(32)),
    ]
    for seed in (0, 1):
        used = {c.downstream_task: c.pretrain_key for c in shared.finetune_cells if c.seed == seed and c.pretrain_key}
        assert used["brats_segmentation"] == used["whole_tumour"]
        assert used["whole_tumour"] in {job.key for job in shared.pretrain_jobs}
    assert shared.pretrain_count_line(grid) == (
        "pretrain jobs: 2 (not 4 = 1 x 2 x 2: datasets with identical content share their pretrain jobs)"
    )
    separate = plan_grid(grid, {"brats": "v1", "copy": "v2"})
    assert len(separate.pretrain_jobs) == 4
    assert separate.pretrain_count_line(grid).startswith("pretrain jobs: 4 = 1 initialisations")


def test_describe_lists_the_grid_and_counts_its_jobs():
    grid = _grid(
        seeds=(0, 3),
        fractions=(1.0, 0.25),
        datasets={"ct": {"type": "abdominal_ct_phantom"}, "fetal": {"type": "fetal_planes_phantom"}},
        downstream_tasks=("fetal_plane_classification", "abdominal_organ_localisation"),
        initialisations=("random", "jigsaw", "autoencoder"),
        downstream={
            "fetal_plane_classification": {"dataset": "fetal"},
            "abdominal_organ_localisation": {"dataset": "ct"},
        },
    )
    plan = plan_grid(grid, {"ct": "c1", "fetal": "f1"})
    assert plan.describe(grid, "cuda:1").split("\n") == [
        "grid 'keys': 8 pretrain jobs + 24 finetune cells on cuda:1",
        "  initialisations: random, jigsaw, autoencoder",
        "  downstream tasks: fetal_plane_classification, abdominal_organ_localisation",
        "  label budgets: 100%, 25%; seeds: 0, 3",
        "  protocols: fetal_plane_classification: finetune; abdominal_organ_localisation: finetune",
        f"  dataset ct: abdominal_ct_phantom {grid.dataset_config('ct')}",
        f"  dataset fetal: fetal_planes_phantom {grid.dataset_config('fetal')}",
        "  pretrain jobs: 8 = 2 initialisations with pretraining x 2 dataset views x 2 seeds, each shared by 2 label "
        "budgets, the protocols and every downstream task that takes its view of its dataset",
    ]


class _Subjects(Dataset):
    """A dataset of ``n`` training subjects and no images: all the label-fraction check reads."""

    Config = dict
    channels = ("t1",)

    def __init__(self, n: int):
        super().__init__({}, Path("."))
        self.train = tuple(f"s{i}" for i in range(n))

    @classmethod
    def example_config(cls, folder: Path) -> dict:
        return {}

    def prepare(self) -> None:
        pass

    def subject_ids(self) -> list[str]:
        return sorted((*self.train, "test"))

    def load(self, subject_id: str) -> Volume:
        raise NotImplementedError

    def content_hash(self) -> str:
        return "0"

    def split(self) -> Split:
        return Split(self.train, ("test",))


def test_label_budgets_are_checked_for_every_downstream_task_before_any_job_runs():
    grid = _grid(
        fractions=(1.0, 0.25),
        label_subjects=(3,),
        datasets={"brats": {"type": "brats_phantom"}, "ct": {"type": "abdominal_ct_phantom"}},
        downstream={"brats_segmentation": {"dataset": "brats"}, "abdominal_organ_localisation": {"dataset": "ct"}},
    )
    check_label_budgets(grid, {"brats": _Subjects(4), "ct": _Subjects(8)})  # 1 and 2 labelled subjects at 0.25
    with pytest.raises(
        ConfigError, match="fractions: abdominal_organ_localisation on dataset ct: label fraction 0.25 of 3 training"
    ):
        check_label_budgets(grid, {"brats": _Subjects(4), "ct": _Subjects(3)})
    with pytest.raises(ConfigError, match="label fraction 0.25 of 2 training subjects leaves no labelled subject"):
        check_label_budgets(grid, {"brats": _Subjects(2), "ct": _Subjects(8)})
    with pytest.raises(
        ConfigError, match="label_subjects: brats_segmentation on dataset brats: a label budget of 3 subjects needs 3"
    ):
        check_label_budgets(replace(grid, fractions=(1.0,)), {"brats": _Subjects(2), "ct": _Subjects(8)})


def test_two_budgets_that_label_the_same_subjects_are_refused():
    """25 % of 8 training subjects is 2 subjects: the same cell twice."""
    grid = _grid(fractions=(1.0, 0.25), label_subjects=(2,), downstream_tasks=("brats_segmentation",))
    with pytest.raises(
        ConfigError, match="label_subjects: brats_segmentation on dataset brats: 2 subjects and 25% both label 2"
    ):
        check_label_budgets(grid, {"brats": _Subjects(8)})
    check_label_budgets(grid, {"brats": _Subjects(12)})  # 25 % is 3


def test_a_task_left_without_cells_is_refused():
    grid = _grid(
        initialisations=("random_augmentation",),
        downstream_tasks=("fetal_plane_classification",),
        datasets={"fetal": {"type": "fetal_planes_phantom"}},
        downstream={"fetal_plane_classification": {"dataset": "fetal"}},
        protocols=("knn",),
    )
    with pytest.raises(ConfigError, match="protocols: fetal_plane_classification gets no cell: knn trains nothing"):
        plan_grid(grid, {"fetal": "v"})


def test_protocols_and_label_budgets_are_axes_of_the_cell_key():
    """Every (protocol, budget) of a task is a cell of its own key; knn only where the grid gives it, and without the
    initialisation that only augments training (it would repeat Random's knn cell)."""
    grid = _grid(
        initialisations=("random", "random_augmentation", "autoencoder"),
        downstream_tasks=("fetal_plane_classification", "brats_segmentation"),
        datasets={"brats": {"type": "brats_phantom"}, "fetal": {"type": "fetal_planes_phantom"}},
        downstream={
            "brats_segmentation": {"dataset": "brats", "patch_size": 32},
            "fetal_plane_classification": {"dataset": "fetal"},
        },
        fractions=(1.0,),
        label_subjects=(2,),
        protocols=("finetune", "frozen"),
        protocols_by_task={"fetal_plane_classification": ("finetune", "knn")},
    )
    plan = plan_grid(grid, {"brats": "v1", "fetal": "v2"})
    cells = {(c.downstream_task, c.protocol, c.initialisation, c.budget): c for c in plan.finetune_cells}
    budgets = (LabelBudget.of_fraction(1.0), LabelBudget.of_subjects(2))
    expected = {
        ("brats_segmentation", protocol, init, budget)
        for protocol in ("finetune", "frozen")
        for init in grid.initialisations
        for budget in budgets
    }
    expected |= {("fetal_plane_classification", "finetune", init, b) for init in grid.initialisations for b in budgets}
    expected |= {("fetal_plane_classification", "knn", init, b) for init in ("random", "autoencoder") for b in budgets}
    assert set(cells) == expected and len(plan.finetune_cells) == len(expected)
    assert len({cell.key for cell in plan.finetune_cells}) == len(expected)
    frozen = cells["brats_segmentation", "frozen", "autoencoder", budgets[1]]
    assert frozen.name == "frozen/autoencoder/brats_segmentation/2subjects/seed0"
    assert frozen.pretrain_key == cells["brats_segmentation", "finetune", "autoencoder", budgets[1]].pretrain_key
    assert cells["fetal_plane_classification", "knn", "random", budgets[0]].name == (
        "knn/random/fetal_plane_classification/1/seed0"
    )
    description = plan.describe(grid, "cpu")
    assert "label budgets: 100%, 2 subjects" in description
    assert "fetal_plane_classification: finetune, knn; brats_segmentation: finetune, frozen" in description
    assert "so random_augmentation would repeat Random there: not run" in description


def test_the_knn_neighbours_are_in_the_key_of_knn_cells_only():
    grid = _grid(
        downstream_tasks=("fetal_plane_classification",),
        datasets={"fetal": {"type": "fetal_planes_phantom"}},
        downstream={"fetal_plane_classification": {"dataset": "fetal"}},
        protocols=("finetune", "knn"),
    )
    keys = {c.name: c.key for c in plan_grid(grid, {"fetal": "v"}).finetune_cells}
    other = {c.name: c.key for c in plan_grid(replace(grid, knn=KnnConfig(7)), {"fetal": "v"}).finetune_cells}
    assert {name for name in keys if keys[name] != other[name]} == {
        "knn/random/fetal_plane_classification/0.5/seed0",
        "knn/autoencoder/fetal_plane_classification/0.5/seed0",
    }
