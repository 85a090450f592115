"""The three phantom datasets: one adapter, their default folders, the errors for settings they cannot honour, and
the folders they may write (never one holding files the suite did not write)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssl_medbench.core.errors import ConfigError, DataError
from ssl_medbench.datasets import DATASETS
from ssl_medbench.datasets.phantom_generators.brats import PhantomSpec, generate_brats_phantoms
from ssl_medbench.datasets.phantom_generators.folder import MARKER, WRITER, build_once
from tests.brats_files import write_subject


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


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("name", ["brats_phantom", "fetal_planes_phantom", "abdominal_ct_phantom"])
def test_a_root_holding_files_the_suite_did_not_write_is_left_untouched(name, tmp_path):
    root = tmp_path / "my_data"
    write_subject(root, "BraTS2021_00000")
    (root / "notes.txt").write_text("scanner settings, do not lose")
    before = _snapshot(root)
    cls = DATASETS.get(name)
    with pytest.raises(DataError) as raised:
        cls(cls.Config(root=str(root)), tmp_path / "out").prepare()
    assert str(raised.value) == (
        f"{root}: exists and was not written by ssl-medbench (no phantom.json); "
        f"choose an empty or new folder for dataset '{name}'"
    )
    assert _snapshot(root) == before and not list(tmp_path.glob("*.partial-*"))


def test_the_generator_itself_refuses_a_foreign_folder(tmp_path):
    root = tmp_path / "my_data"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="my_data: exists and was not written by ssl-medbench"):
        generate_brats_phantoms(root, PhantomSpec(n_subjects=2, voxel_size_mm=8.0))
    assert (root / "notes.txt").read_text() == "mine" and len(list(root.iterdir())) == 1


def test_an_empty_folder_or_one_the_suite_wrote_is_filled(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    generate_brats_phantoms(root, PhantomSpec(n_subjects=2, voxel_size_mm=8.0))
    assert len([p for p in root.iterdir() if p.is_dir()]) == 2
    generate_brats_phantoms(root, PhantomSpec(n_subjects=3, voxel_size_mm=8.0))  # our marker: regenerated
    assert len([p for p in root.iterdir() if p.is_dir()]) == 3


def test_a_stray_marker_does_not_make_a_folder_ours(tmp_path):
    root = tmp_path / "my_data"
    (root / "patientA").mkdir(parents=True)
    (root / "patientA" / "scan.nii.gz").write_bytes(b"scan")
    (root / "phantom.json").write_text("{}")
    with pytest.raises(DataError, match="my_data: holds files ssl-medbench did not write \\(patientA, phantom.json\\)"):
        generate_brats_phantoms(root, PhantomSpec(n_subjects=2, voxel_size_mm=8.0))
    assert (root / "patientA" / "scan.nii.gz").read_bytes() == b"scan"


@pytest.mark.parametrize("added", ["notes.txt", "results"])
def test_files_added_to_a_generated_folder_stop_its_regeneration(tmp_path, added):
    """A user's notes, or a run folder (--out) placed inside the phantom root, are never deleted with it."""
    root = generate_brats_phantoms(tmp_path / "phantoms", PhantomSpec(n_subjects=2, voxel_size_mm=8.0))
    (root / added).mkdir() if added == "results" else (root / added).write_text("mine")
    before = sorted(path.name for path in root.iterdir())
    with pytest.raises(DataError, match=f"holds files ssl-medbench did not write \\({added}\\)"):
        generate_brats_phantoms(root, PhantomSpec(n_subjects=3, voxel_size_mm=8.0))
    assert sorted(path.name for path in root.iterdir()) == before


def _written_by_another_run_meanwhile(root: Path, settings: dict):
    """A ``write`` during which another run finishes the same folder (with ``settings``) and renames it into place."""

    def write(partial: Path) -> None:
        (partial / "mine.txt").write_text("this run's copy")
        root.mkdir()
        (root / "theirs.txt").write_text("the other run's copy")
        marker = {**settings, "_written_by": WRITER, "_entries": ["theirs.txt"]}
        (root / MARKER).write_text(json.dumps(marker))

    return write


def test_a_folder_another_run_finished_meanwhile_is_reused_not_a_crash(tmp_path):
    """Two drivers generating one phantom folder: the one that renames second keeps the winner's complete folder."""
    root = tmp_path / "phantom"
    assert build_once(root, {"n": 1}, _written_by_another_run_meanwhile(root, {"n": 1})) == root
    assert sorted(path.name for path in root.iterdir()) == ["phantom.json", "theirs.txt"]
    assert [path.name for path in tmp_path.iterdir()] == ["phantom"]  # no partial folder left behind
    with pytest.raises(DataError, match="another run wrote it with other settings"):
        build_once(tmp_path / "other", {"n": 1}, _written_by_another_run_meanwhile(tmp_path / "other", {"n": 2}))
