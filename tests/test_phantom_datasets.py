"""The three phantom datasets: one adapter, their default folders and the errors for settings they cannot honour."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_medbench.core.errors import ConfigError
from ssl_medbench.datasets import DATASETS


@pytest.mark.parametrize(
    "name, folder",
    [
        ("brats_phantom", "brats_phantom-6eb8bef759"),
        ("fetal_planes_phantom", "fetal_planes_phantom-f98fdf9798"),
        ("abdominal_ct_phantom", "abdominal_ct_phantom-7f96ab3fdd"),
    ],
)
def test_default_folder_is_named_by_the_digest_of_the_generator_settings(name, folder):
    """Runs of earlier versions find their data again: the folder names of the default settings never change."""
    cls = DATASETS.get(name)
    assert cls(cls.Config(), Path("out")).root == Path("out") / "data" / folder
    assert cls(cls.Config(root="~/phantoms"), Path("out")).root == Path("~/phantoms").expanduser()


@pytest.mark.parametrize(
    "name, settings, message",
    [
        ("brats_phantom", {"n_subjects": 1}, "brats_phantom.n_subjects must be >= 2, got 1"),
        ("abdominal_ct_phantom", {"n_subjects": 0}, "abdominal_ct_phantom.n_subjects must be >= 2, got 0"),
        (
            "fetal_planes_phantom",
            {"images_per_patient": 0},
            "fetal_planes_phantom needs n_patients >= 2 and images_per_patient >= 1",
        ),
    ],
)
def test_settings_the_generator_cannot_honour_are_refused_before_writing(name, settings, message, tmp_path):
    cls = DATASETS.get(name)
    with pytest.raises(ConfigError) as raised:
        cls(cls.Config(**settings), tmp_path).prepare()
    assert str(raised.value) == message
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("name", ["brats_phantom", "fetal_planes_phantom", "abdominal_ct_phantom"])
def test_the_contract_example_uses_the_generators_tiny_settings(name, tmp_path, monkeypatch):
    cls = DATASETS.get(name)
    monkeypatch.setattr(cls.spec_class, "generate", lambda spec, root: root)
    config = cls.example_config(tmp_path / "example")
    assert cls(config, tmp_path).spec == cls.spec_class.example()
    assert config.root == str(tmp_path / "example")
