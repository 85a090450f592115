"""The evaluation protocols: frozen leaves the encoder bit-identical, knn equals scikit-learn's kNN, and a grid runs
every protocol end to end with label budgets in subjects."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from sklearn.neighbors import KNeighborsClassifier

from benchmark import jobs
from benchmark.cli import main
from benchmark.grid import TrainConfig
from benchmark.training import train
from ssl_medbench.datasets.base import Volume
from ssl_medbench.downstream.brats_segmentation import BratsSegmentation
from ssl_medbench.downstream.fetal_plane_classification import FetalPlaneClassification
from ssl_medbench.networks.classifier import LinearProbe, pooled_features
from ssl_medbench.networks.encoder import EncoderConfig, create_encoder
from ssl_medbench.networks.knn import KNNClassifier, knn_votes
from tests.conftest import TINY_FETAL_PHANTOM

ENCODER = EncoderConfig(name="chen_vgg", kwargs={"channels": [8, 16, 32]})


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def _train(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss, frozen) -> None:
    def batches(step: int):
        while True:
            yield inputs, targets

    schedule = TrainConfig(epochs=1, steps_per_epoch=3, batch_size=len(inputs), learning_rate=1e-2)
    train(model, batches, loss, schedule, lambda *_: None, "test", frozen=frozen)


@pytest.mark.parametrize("frozen", [True, False], ids=["frozen", "finetune"])
def test_frozen_training_leaves_every_encoder_weight_and_statistic_bit_identical(frozen):
    """Segmentation, decoder trained: under ``frozen`` every encoder parameter and batch-norm buffer is unchanged to
    the bit while the decoder moves; without it the encoder changes (the test can fail)."""
    torch.manual_seed(0)
    task = BratsSegmentation(BratsSegmentation.Config(dataset="d", patch_size=32), 4)
    model = task.build_frozen_model(create_encoder(ENCODER, 4), None)
    before_encoder, before_decoder = _state(model.encoder), _state(model.decoder)
    inputs = torch.randn(4, 4, 32, 32)
    targets = torch.randint(0, 4, (4, 32, 32))
    _train(model, inputs, targets, task.loss, model.encoder if frozen else None)
    after = _state(model.encoder)
    identical = [torch.equal(before_encoder[name], after[name]) for name in before_encoder]
    assert all(identical) if frozen else not all(identical)
    assert any(not torch.equal(before_decoder[k], v) for k, v in _state(model.decoder).items())
    assert any("running_mean" in name for name in before_encoder)  # batch-norm statistics are among those compared


def test_a_classification_task_trains_a_linear_probe_on_the_frozen_encoder():
    torch.manual_seed(0)
    task = FetalPlaneClassification(FetalPlaneClassification.Config(dataset="d"), 1, ("a", "b", "c"))
    model = task.build_frozen_model(create_encoder(ENCODER, 1), None)
    assert isinstance(model, LinearProbe) and model.linear.out_features == 3
    assert [name for name, _ in model.named_children()] == ["encoder", "normalise", "linear"]
    before, linear = _state(model.encoder), _state(model.linear)
    _train(model, torch.randn(6, 1, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2]), task.loss, model.encoder)
    assert all(torch.equal(before[k], v) for k, v in _state(model.encoder).items())
    assert not torch.equal(linear["weight"], model.linear.weight)


@pytest.mark.parametrize("k", [1, 5, 20, 40, 100])
def test_knn_votes_give_scikit_learns_cosine_k_nearest_neighbour_predictions(k):
    """Random features (no distance ties); k above the 40 labelled examples takes them all, as the protocol does."""
    rng = np.random.default_rng(k)
    bank, queries = rng.normal(size=(40, 16)), rng.normal(size=(30, 16))
    classes = rng.integers(0, 4, 40)
    votes = knn_votes(torch.from_numpy(bank), torch.from_numpy(classes), torch.from_numpy(queries), k, 4)
    reference = KNeighborsClassifier(n_neighbors=min(k, 40), metric="cosine", algorithm="brute").fit(bank, classes)
    np.testing.assert_array_equal(votes.argmax(dim=1).numpy(), reference.predict(queries))
    assert votes.sum(dim=1).eq(min(k, 40)).all()
    np.testing.assert_allclose(votes.numpy() / min(k, 40), reference.predict_proba(queries)[:, np.unique(classes)])


def test_a_tied_vote_goes_to_the_lowest_class_as_in_scikit_learn():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    classes = torch.tensor([2, 2, 1, 1])
    votes = knn_votes(bank, classes, torch.tensor([[1.0, 1.0]]), 4, 3)
    assert votes.tolist() == [[0.0, 2.0, 2.0]] and votes.argmax(dim=1).item() == 1
    sklearn = KNeighborsClassifier(n_neighbors=4, metric="cosine").fit(bank.numpy(), classes.numpy())
    assert sklearn.predict(np.array([[1.0, 1.0]])).tolist() == [1]


def test_among_equally_similar_labelled_images_the_first_is_nearer():
    """Duplicate labelled images of other classes (or a collapsed encoder's identical features) tie: the lower index
    wins, on every device (scikit-learn's choice among ties depends on its partition algorithm)."""
    bank = torch.tensor([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    classes = torch.tensor([2, 0, 1, 1, 0])
    queries = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    assert knn_votes(bank, classes, queries, 1, 3).argmax(dim=1).tolist() == [2, 2]  # first of the tied rows
    assert knn_votes(bank, classes, queries, 2, 3).tolist() == [[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]]


def test_the_knn_classifier_encodes_labelled_images_once_and_votes_on_their_pooled_features():
    torch.manual_seed(1)
    encoder = create_encoder(ENCODER, 1).eval()
    images, classes = torch.randn(12, 1, 32, 32), torch.tensor([0, 1, 2] * 4)
    model = KNNClassifier.fit(copy.deepcopy(encoder), images, classes, 3, k=5, batch_size=5, device=torch.device("cpu"))
    queries = torch.randn(7, 1, 32, 32)
    with torch.inference_mode():
        bank, features = pooled_features(encoder, images), pooled_features(encoder, queries)
        predicted = model(queries).argmax(dim=1)
    reference = KNeighborsClassifier(n_neighbors=5, metric="cosine").fit(bank.numpy(), classes.numpy())
    assert predicted.tolist() == reference.predict(features.numpy()).tolist()
    assert model.neighbours == 5
    assert KNNClassifier.fit(encoder, images[:3], classes[:3], 3, 20, 8, torch.device("cpu")).neighbours == 3


def test_labelled_images_are_every_image_with_its_own_class():
    task = FetalPlaneClassification(FetalPlaneClassification.Config(dataset="d"), 1, ("a", "b", "c"))
    images = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    first = Volume("s1", images, np.zeros((4, 4, 3), np.uint8), (1.0, 1.0, 1.0), np.array([0, 2, 1]))
    second = Volume("s2", images[..., :1] + 1, np.zeros((4, 4, 1), np.uint8), (1.0, 1.0, 1.0), np.array([2]))
    inputs, classes = task.labelled_images([first, second])
    assert inputs.shape == (4, 2, 4, 4) and classes.tolist() == [0, 2, 1, 2]
    assert torch.equal(inputs[1], torch.from_numpy(images[..., 1])) and torch.equal(inputs[3], inputs[0] + 1)


def test_a_task_that_does_not_classify_images_has_no_labelled_images_for_knn():
    task = BratsSegmentation(BratsSegmentation.Config(dataset="d"), 4)
    assert not task.classifies_images and FetalPlaneClassification.classifies_images
    with pytest.raises(NotImplementedError, match="BratsSegmentation does not classify images"):
        task.labelled_images([])


def _fetal_grid(write_grid, **changes) -> Path:
    return write_grid(
        initialisations=["random", "random_augmentation", "autoencoder"],
        fractions=[1.0],
        label_subjects=[1],
        downstream_tasks=["fetal_plane_classification"],
        protocols=["finetune", "frozen", "knn"],
        datasets={"fetal": TINY_FETAL_PHANTOM},
        downstream={"fetal_plane_classification": {"dataset": "fetal"}},
        knn={"neighbours": 4},
        **changes,
    )


def test_a_grid_runs_every_protocol_and_budget_and_reports_them(write_grid, tmp_path, capsys, monkeypatch):
    """3 initialisations x 2 budgets x (finetune, frozen) + 2 x 2 knn cells (random augmentation has none) and one
    autoencoder pretrain job; each run records its protocol and budget, a frozen cell's encoder (transferred or
    random) leaves training bit-identical, knn trains nothing, the report shows the protocol of every row and
    Kendall's tau between the protocols."""
    encoder_unchanged: dict[str, bool] = {}
    networks: dict[str, str] = {}

    def watched_train(model, *args, description, **kwargs):
        networks[description] = type(model).__name__
        before = _state(model.encoder)
        history = train(model, *args, description=description, **kwargs)
        encoder_unchanged[description] = all(torch.equal(before[k], v) for k, v in _state(model.encoder).items())
        return history

    monkeypatch.setattr(jobs, "train", watched_train)
    out = tmp_path / "out"
    assert main(["run", "--grid", str(_fetal_grid(write_grid)), "--out", str(out), "--no-progress"]) == 0
    assert "17 jobs finished, 0 skipped" in capsys.readouterr().out
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    cells = {
        (r.data.tags["protocol"], r.data.tags["initialisation"], r.data.tags.get("label_subjects", "")): r
        for r in runs
        if r.data.tags["kind"] == "finetune"
    }
    assert len(cells) == 16 and all(r.info.status == "FINISHED" for r in runs)
    assert ("knn", "random_augmentation", "") not in cells
    one_subject = cells["frozen", "autoencoder", "1"]
    assert "label_fraction" not in one_subject.data.tags and one_subject.data.params["labelled_subjects"] == "1"
    assert one_subject.info.run_name == "frozen/autoencoder/fetal_plane_classification/1subjects/seed0"
    assert cells["finetune", "random", ""].data.tags["label_fraction"] == "1"
    knn = cells["knn", "autoencoder", "1"]  # one patient's 4 images: each vote takes all of them
    assert knn.data.params["knn_bank_images"] == "4" and knn.data.params["knn_neighbours_used"] == "4"
    full = cells["knn", "autoencoder", ""].data.params
    assert int(full["knn_bank_images"]) > 4 and full["knn_neighbours_used"] == "4"
    assert not any(name.startswith("train_") for name in knn.data.metrics) and "f1" in knn.data.metrics
    assert "train_loss" in one_subject.data.metrics
    trained = {name for name in encoder_unchanged if not name.startswith("pretrain/")}
    assert trained == {r.info.run_name for r in runs if r.data.tags["kind"] == "finetune"} - {
        r.info.run_name for (protocol, _, _), r in cells.items() if protocol == "knn"
    }
    assert all(encoder_unchanged[name] == name.startswith("frozen/") for name in trained)
    assert {networks[name] for name in trained if name.startswith("frozen/")} == {"LinearProbe"}
    assert {networks[name] for name in trained if name.startswith("finetune/")} == {"SonoNetClassifier"}
    assert (
        knn.data.tags["augmentation"] == "off"
        and cells["frozen", "random_augmentation", ""].data.tags["augmentation"] == "on"
    )
    report = out / "report"
    markdown = (report / "report.md").read_text()
    for heading in ("## fetal_plane_classification\n", "protocol frozen", "protocol knn"):
        assert heading in markdown
    assert "| knn | 1 subject | AE |" in markdown and "| frozen | 100% | RD+AG |" in markdown
    assert "At 1 subject, the labelled images were no more than k" in markdown
    agreement = pd.read_csv(report / "tables" / "protocol_agreement.csv")
    assert sorted(agreement["protocols"].unique()) == ["finetune vs frozen", "finetune vs knn", "frozen vs knn"]
    assert set(agreement["budget"]) == {"1 subject", "100%"}
    assert set(agreement["initialisations"]) == {3, 2}  # knn has no RD+AG
    assert (report / "tables" / "fetal_plane_classification_knn.csv").is_file()
