"""Grid loading: presets, overrides and every bad input as one clear ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from benchmark.grid import GridConfig, load_grid, preset_names
from benchmark.planner import plan_grid
from benchmark.preflight import check_networks
from ssl_medbench.core.errors import ConfigError, UnknownPluginError
from ssl_medbench.datasets import DATASETS, Dataset
from ssl_medbench.downstream.brats_segmentation import BratsSegmentation
from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from tests.conftest import PAPER_INITIALISATIONS


@pytest.mark.parametrize("name", ["smoke", "validate", "paper", "full"])
def test_presets_load_and_plan(name):
    grid = load_grid(name)
    plan = plan_grid(grid, {dataset: f"v-{dataset}" for dataset in grid.datasets})
    pretraining = [i for i in grid.initialisations if PRETEXT_TASKS.get(i)().requires_pretraining]
    datasets = {grid.downstream_config(task).dataset for task in grid.downstream_tasks}
    assert len(plan.pretrain_jobs) == len(pretraining) * len(grid.seeds) * len(datasets)
    augments_only = [i for i in grid.initialisations if PRETEXT_TASKS.get(i)().finetune_augmentation() is not None]
    evaluated = {  # initialisations per protocol: knn trains nothing, so augmenting training adds no cell there
        protocol: len(grid.initialisations) - (len(augments_only) if protocol == "knn" else 0)
        for protocol in ("finetune", "frozen", "knn")
    }
    per_budget_and_seed = sum(evaluated[p] for task in grid.downstream_tasks for p in grid.protocols_for(task))
    assert len(plan.finetune_cells) == per_budget_and_seed * len(grid.label_budgets) * len(grid.seeds)


def test_paper_preset_follows_the_paper_protocol():
    grid = load_grid("paper")
    assert grid.fractions == (1.0, 0.5, 0.25)
    assert grid.downstream_config("brats_segmentation").patch_size == 64
    assert set(preset_names()) >= {"smoke", "paper", "full"}


def test_overrides_are_typed_and_can_replace_a_dataset():
    grid = load_grid(
        "smoke", ["pretrain.epochs=7", "fractions=[0.25]", "datasets.brats_phantom={type: brats, root: /data}"]
    )
    assert grid.pretrain.epochs == 7
    assert grid.fractions == (0.25,)
    assert grid.dataset_config("brats_phantom").root == "/data"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["colour=red"], "top level: unknown key 'colour'"),
        (["pretrain.epochz=1"], "pretrain: unknown key 'epochz'"),
        (["pretrain.epochs=ten"], "pretrain.epochs: expected an integer, got str 'ten'"),
        (["pretrain.epochs=0"], "pretrain.epochs: must be >= 1"),
        (["fractions=[1.5]"], r"fractions: 1.5 is outside \(0, 1\]"),
        (["fractions=[0]"], r"fractions: 0.0 is outside \(0, 1\]"),
        (["fractions=[]", "label_subjects=[]"], "fractions, label_subjects: no label budget"),
        (["label_subjects=[2, 2]"], "label_subjects: duplicate entries 2"),
        (["protocols=[]"], "protocols: must not be empty"),
        (
            ["protocols_by_task={fetal_plane_classification: []}"],
            "protocols_by_task.fetal_plane_classification: must not",
        ),
        (["seeds=[1.5]"], r"seeds\[0\]: expected an integer"),
        (["seeds=[true]"], r"seeds\[0\]: expected an integer"),
        (["initialisations=[random, random]"], "initialisations: duplicate entries random"),
        (["downstream.brats_segmentation.dataset=nowhere"], "'nowhere' is not defined under datasets"),
        (["datasets.brats_phantom.voxel_size_mm=big"], "datasets.brats_phantom.voxel_size_mm: expected a number"),
        (["datasets.brats_phantom.colour=1"], "datasets.brats_phantom: unknown key 'colour'"),
        (["pretext.context_restoration.iterations=-1"], "pretext.context_restoration: iterations must be >= 0"),
        (
            ["pretext.context_restoration.decoder=mlp"],
            "pretext.context_restoration: decoder must be one of auto, unet, deconv, got 'mlp'",
        ),
        (["pretext.random_augmentation.scale=1.5"], "pretext.random_augmentation: scale must be < 1"),
        (["pretrain"], "expected key=value"),
        (["finetune_by_task.jigsaw={epochs: 2}"], "finetune_by_task.jigsaw: not one of this grid's downstream tasks"),
        (
            ["finetune_by_task.abdominal_organ_localisation={steps: 2}"],
            "finetune_by_task.abdominal_organ_localisation: unknown key 'steps'",
        ),
        (
            ["finetune_by_task.abdominal_organ_localisation={learning_rate: 50.0}"],
            "finetune_by_task.abdominal_organ_localisation.learning_rate: must be > 0",
        ),
    ],
)
def test_bad_grids_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_grid("smoke", overrides)


def test_augmented_baseline_needs_downstream_tasks_that_declare_their_target_geometry(monkeypatch):
    assert load_grid("smoke").initialisations  # random_augmentation with brats_segmentation ("dense") is fine
    monkeypatch.setattr(BratsSegmentation, "target_geometry", None)
    with pytest.raises(
        ConfigError, match="random_augmentation augments training batches, but downstream task 'brats_segmentation'"
    ):
        load_grid("smoke")


def test_identical_content_seen_through_different_views_pretrains_once_per_view():
    """Fetal images and CT slices with the same content version still differ in view (whole images vs slices along
    three axes), so their pretraining is not shared."""
    grid = load_grid("smoke", ["downstream_tasks=[fetal_plane_classification, abdominal_organ_localisation]"])
    same = plan_grid(grid, {"brats_phantom": "v", "fetal_phantom": "same", "ct_phantom": "same"})
    different = plan_grid(grid, {"brats_phantom": "v", "fetal_phantom": "f", "ct_phantom": "c"})
    assert len(different.pretrain_jobs) == len(same.pretrain_jobs) == 18  # 9 pretext tasks x 2 views
    assert {c.pretrain_key for c in same.finetune_cells if c.pretrain_key} == {job.key for job in same.pretrain_jobs}


def test_auto_decoder_follows_the_paper_per_dataset():
    """Fig. 3: the U-Net decoder where the downstream task segments, a few deconvolutions before classification."""
    grid = load_grid("smoke")
    assert grid.pretext_config_for("context_restoration", "brats_phantom").decoder == "unet"
    assert grid.pretext_config_for("context_restoration", "fetal_phantom").decoder == "deconv"
    assert grid.pretext_config_for("autoencoder", "ct_phantom").decoder == "deconv"
    fixed = load_grid("smoke", ["pretext.context_restoration.decoder=unet"])
    assert fixed.pretext_config_for("context_restoration", "fetal_phantom").decoder == "unet"
    assert grid.pretext_config_for("jigsaw", "fetal_phantom") == grid.pretext_config("jigsaw")


def test_every_preset_runs_all_seven_initialisations_of_the_paper():
    """The paper preset runs the paper's seven; smoke and full add rotation, Models Genesis, masked modelling, SimCLR."""
    paper = set(PAPER_INITIALISATIONS)
    for name in ("smoke", "paper", "full"):
        grid = load_grid(name)
        beyond = set() if name == "paper" else {"rotation", "models_genesis", "masked_modelling", "simclr"}
        assert set(grid.initialisations) == paper | beyond
        assert set(grid.downstream_tasks) == {
            "brats_segmentation",
            "fetal_plane_classification",
            "abdominal_organ_localisation",
        }


def test_unknown_grid_and_plugins():
    with pytest.raises(ConfigError, match="unknown grid 'smok'"):
        load_grid("smok")
    with pytest.raises(ConfigError, match="grid file does not exist"):
        load_grid("missing.yaml")
    with pytest.raises(UnknownPluginError, match="did you mean 'context_restoration'"):
        load_grid("smoke", ["initialisations=[random, context_restore]"])
    with pytest.raises(UnknownPluginError, match="unknown dataset 'bratz'"):
        load_grid("smoke", ["datasets.brats_phantom.type=bratz"])


def test_pretrain_jobs_are_shared_and_keys_track_every_setting():
    grid = load_grid("smoke", ["seeds=[0, 1]", "fractions=[1.0, 0.5, 0.25]"])
    plan = plan_grid(grid, {"brats_phantom": "v1", "fetal_phantom": "f1", "ct_phantom": "c1"})
    assert len(plan.pretrain_jobs) == 54  # 9 pretext tasks x 3 datasets x 2 seeds, each shared by 3 fractions
    cr_cells = [c for c in plan.finetune_cells if c.initialisation == "context_restoration"]
    cr_jobs = {j.key for j in plan.pretrain_jobs if j.initialisation == "context_restoration"}
    assert len(cr_jobs) == 6 and {c.pretrain_key for c in cr_cells} == cr_jobs
    assert all(
        c.pretrain_key is None for c in plan.finetune_cells if c.initialisation in ("random", "random_augmentation")
    )
    assert len({c.key for c in plan.finetune_cells}) == len(plan.finetune_cells)
    same = plan_grid(
        load_grid("smoke", ["seeds=[0, 1]", "fractions=[1.0, 0.5, 0.25]"]),
        {"brats_phantom": "v1", "fetal_phantom": "f1", "ct_phantom": "c1"},
    )
    assert same == plan
    changed_epochs = plan_grid(
        load_grid("smoke", ["seeds=[0, 1]", "fractions=[1.0, 0.5, 0.25]", "pretrain.epochs=3"]),
        {"brats_phantom": "v1", "fetal_phantom": "f1", "ct_phantom": "c1"},
    )
    assert {j.key for j in changed_epochs.pretrain_jobs}.isdisjoint(j.key for j in plan.pretrain_jobs)
    random_keys = lambda p: {c.key for c in p.finetune_cells if c.initialisation == "random"}  # noqa: E731
    assert random_keys(changed_epochs) == random_keys(plan)  # random cells do not depend on pretraining
    new_data = plan_grid(grid, {"brats_phantom": "v2", "fetal_phantom": "f2", "ct_phantom": "c2"})
    assert {c.key for c in new_data.finetune_cells}.isdisjoint(c.key for c in plan.finetune_cells)


def _datasets(grid: GridConfig, folder: Path) -> dict[str, Dataset]:
    """The grid's datasets, not prepared."""
    return {name: DATASETS.get(grid.dataset_type(name))(grid.dataset_config(name), folder) for name in grid.datasets}


def test_smoke_networks_pass_the_preflight_check(tmp_path):
    grid = load_grid("smoke")
    check_networks(grid, _datasets(grid, tmp_path))


def test_the_frozen_protocol_needs_a_network_whose_encoder_it_can_freeze(tmp_path, monkeypatch):
    """A task whose frozen network has no ``encoder`` attribute is refused before any job, naming the protocol; the
    frozen linear probe of plane classification is built and run like the other networks."""
    grid = load_grid("smoke", ["protocols=[finetune, frozen]", "protocols_by_task={}"])
    check_networks(grid, _datasets(grid, tmp_path))
    monkeypatch.setattr(BratsSegmentation, "build_frozen_model", lambda self, encoder, decoder: nn.Conv2d(4, 4, 1))
    with pytest.raises(ConfigError, match="protocols: frozen needs the encoder of brats_segmentation's network"):
        check_networks(grid, _datasets(grid, tmp_path))
    monkeypatch.setattr(BratsSegmentation, "build_frozen_model", lambda self, encoder, decoder: _EncoderOnly(encoder))
    with pytest.raises(ConfigError, match="protocols: frozen leaves nothing of brats_segmentation's network to train"):
        check_networks(grid, _datasets(grid, tmp_path))


class _EncoderOnly(nn.Module):
    """A network that is its encoder and nothing more."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, images):
        return self.encoder(images)[-1]


def test_the_frozen_linear_probe_needs_two_images_per_batch():
    with pytest.raises(ConfigError, match="finetune.batch_size: the frozen protocol's linear probe of fetal_plane"):
        load_grid("smoke", ["finetune.batch_size=1"])
    load_grid("smoke", ["finetune.batch_size=1", "protocols_by_task={fetal_plane_classification: [finetune, knn]}"])
    with pytest.raises(ConfigError, match="finetune_by_task.fetal_plane_classification.batch_size: the frozen"):
        load_grid("smoke", ["finetune_by_task={fetal_plane_classification: {batch_size: 1}}"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["downstream.brats_segmentation.patch_size=60"],
            "downstream.brats_segmentation.patch_size: 60 does not fit the autoencoder network .* total stride 8",
        ),
        (
            ["downstream.abdominal_organ_localisation.slice_size=4"],
            "downstream.abdominal_organ_localisation.slice_size",
        ),
        (["datasets.fetal_phantom.image_size=4"], "datasets.fetal_phantom.image_size: 4 does not fit"),
        (
            ["pretext.jigsaw.patch_fraction=0.3"],
            r"pretext.jigsaw: a 3x3 grid of 19-pixel patches .* \(pretraining on the view "
            r"downstream.brats_segmentation.patch_size = 64 sets\)",
        ),
        (
            ["pretext.relative_position.jitter_fraction=0.2"],
            "pretext.relative_position: jitter .* must not exceed the gap",
        ),
        (
            ["pretext.context_restoration.patch_size=40"],
            "pretext.context_restoration: two disjoint 40x40 patches do not fit",
        ),
        (
            ["pretext_by_dataset={ct_phantom: {context_restoration: {patch_size: 40}}}"],
            r"pretext.context_restoration: two disjoint 40x40 patches do not fit .*abdominal_organ_localisation",
        ),
    ],
)
def test_networks_that_do_not_fit_the_configured_sizes_name_the_key(overrides, message, tmp_path):
    grid = load_grid("smoke", overrides)
    with pytest.raises(ConfigError, match=message):
        check_networks(grid, _datasets(grid, tmp_path))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["pretrain.learning_rate=.nan"], "pretrain.learning_rate: expected a finite number, got float nan"),
        (["finetune.learning_rate=-.inf"], "finetune.learning_rate: expected a finite number, got float -inf"),
        (["name=../../etc"], "name: '../../etc' is not a safe name"),
        (["seeds=[4294967296]"], r"seeds\[0\]: must be >= 0 and <= 4294967295"),
        (["pretrain.batch_size=100000"], "pretrain.batch_size: must be >= 1 and <= 4096"),
        (["pretrain={epochs: 1, epochs: 2}"], "line 1, column 13: duplicate key 'epochs' \\(first on line 1\\)"),
        (["seeds=&s [1]"], "anchor &s: anchors and aliases are not supported"),
        (["seeds=!!set {1}"], "tag tag:yaml.org,2002:set: only plain"),
        (["pretrain..epochs=1"], "expected key=value"),
    ],
)
def test_hostile_values_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_grid("smoke", overrides)


def test_dates_and_equals_signs_stay_strings():
    assert load_grid("smoke", ["name=2024-01-01"]).name == "2024-01-01"
    assert load_grid("smoke", ["datasets.brats_phantom.root=="]).dataset_config("brats_phantom").root == "="


@pytest.mark.parametrize(
    "content, message",
    [
        (b"name: x\n\xff", r"grid file is not UTF-8 text \(byte 0xff at offset 8\)"),
        (b"[1, 2]", "expected a mapping of grid keys at the top level, got list"),
        (b"seeds: [0]\nname: x\nseeds: [1]\n", "line 3, column 1: duplicate key 'seeds' \\(first on line 1\\)"),
        (b"a: &a [x]\nb: [*a, *a]\n", "line 1, column 4: anchor &a"),
    ],
)
def test_grid_files_are_read_strictly(content, message, tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_grid(str(path))


def test_a_task_can_finetune_on_its_own_schedule_and_only_its_cells_change_key():
    grid = load_grid("smoke")
    longer = load_grid("smoke", ["finetune_by_task.abdominal_organ_localisation={steps_per_epoch: 300}"])
    assert longer.finetune_for("abdominal_organ_localisation").steps_per_epoch == 300
    assert longer.finetune_for("abdominal_organ_localisation").learning_rate == grid.finetune.learning_rate
    assert longer.finetune_for("brats_segmentation") == grid.finetune
    versions = {dataset: f"v-{dataset}" for dataset in grid.datasets}
    before, after = ({cell.name: cell.key for cell in plan_grid(g, versions).finetune_cells} for g in (grid, longer))
    changed = sorted({name.split("/")[2] for name in before if before[name] != after[name]})
    assert changed == ["abdominal_organ_localisation"]


def test_validate_preset_holds_the_controls_at_a_high_and_a_low_fraction_with_five_seeds():
    grid = load_grid("validate")
    assert set(grid.initialisations) == {"random", "random_control", "supervised_pretraining", "context_restoration"}
    assert len(grid.downstream_tasks) == 3 and len(grid.seeds) >= 5
    assert max(grid.fractions) == 1.0 and min(grid.fractions) <= 0.25
