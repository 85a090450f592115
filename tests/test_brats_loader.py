"""The BraTS loader on files written in the real layouts (2017-2021 and 2023 naming), and its errors."""

from __future__ import annotations

import gzip
import os
import re
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ssl_medbench.core.errors import DataError
from ssl_medbench.datasets import cached
from ssl_medbench.datasets.brats import BratsFolder, region_masks
from ssl_medbench.datasets.preprocessing import normalise
from tests.brats_files import write_subject


def _dataset(root: Path, workdir: Path) -> BratsFolder:
    dataset = BratsFolder(BratsFolder.Config(root=str(root), test_fraction=0.34), workdir)
    dataset.prepare()
    return dataset


@pytest.mark.parametrize("naming, extension", [("2021", ".nii.gz"), ("2023", ".nii.gz"), ("2021", ".nii")])
def test_reads_both_namings_into_canonical_labels(tmp_path: Path, naming: str, extension: str):
    for index in range(3):
        write_subject(
            tmp_path / "data", f"S{index}", naming=naming, spacing=(1.0, 1.2, 2.5), seed=index, extension=extension
        )
    dataset = _dataset(tmp_path / "data", tmp_path / "out")
    assert dataset.subject_ids() == ["S0", "S1", "S2"]
    volume = dataset.load("S1")
    assert volume.images.shape == (4, 12, 10, 8)
    assert volume.spacing == pytest.approx((1.0, 1.2, 2.5))
    assert set(np.unique(volume.labels).tolist()) == {0, 1, 2, 3}
    regions = region_masks(np.asarray(volume.labels))
    assert regions["whole"].sum() == 6 * 5 * 4
    assert regions["enhancing"].sum() == 4 * 3 * 2 - 2 * 1 * 2
    assert regions["core"].sum() == 4 * 3 * 2


def test_t1ce_is_not_mistaken_for_t1(tmp_path: Path):
    folder = write_subject(tmp_path, "S0")
    t1 = np.asarray(nib.load(folder / "S0_t1.nii.gz").dataobj)
    t1ce = np.asarray(nib.load(folder / "S0_t1ce.nii.gz").dataobj)
    write_subject(tmp_path, "S1", seed=1)
    volume = _dataset(tmp_path, tmp_path / "out").load("S0")
    assert np.allclose(volume.images[0], normalise(np.stack([t1, t1ce]))[0], atol=1e-5)
    assert np.allclose(volume.images[1], normalise(np.stack([t1, t1ce]))[1], atol=1e-5)


def test_any_storage_orientation_is_read_with_axial_slices_last(tmp_path: Path):
    canonical_root, stored_root = tmp_path / "ras", tmp_path / "stored"
    for index in range(2):
        write_subject(canonical_root, f"S{index}", spacing=(1.0, 1.5, 3.0), seed=index)
        folder = write_subject(stored_root, f"S{index}", spacing=(1.0, 1.5, 3.0), seed=index)
        # rewrite every file with the axial axis first and left-right flipped, with the affine that says so
        for path in folder.iterdir():
            image = nib.load(path)
            data = np.asarray(image.dataobj)[::-1].transpose(2, 0, 1)
            affine = np.array([[0, -1.0, 0, 0], [0, 0, 1.5, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]])
            nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), path)
    expected = _dataset(canonical_root, tmp_path / "a").load("S1")
    volume = _dataset(stored_root, tmp_path / "b").load("S1")
    assert volume.spacing == pytest.approx((1.0, 1.5, 3.0))
    assert np.array_equal(np.asarray(volume.labels), np.asarray(expected.labels))
    assert np.allclose(volume.images, expected.images)


def test_normalisation_is_zscore_inside_the_brain_and_zero_outside():
    rng = np.random.default_rng(0)
    images = rng.uniform(5, 50, (2, 6, 6, 6)).astype(np.float32)
    images[:, :2] = 0
    out = normalise(images)
    brain = np.any(images != 0, axis=0)
    assert np.all(out[:, ~brain] == 0)
    for channel in out:
        assert channel[brain].mean() == pytest.approx(0, abs=1e-5)
        assert channel[brain].std() == pytest.approx(1, abs=1e-4)


def test_content_hash_changes_with_any_file_and_a_changed_subject_alone_is_recached(tmp_path: Path):
    for index in range(2):
        write_subject(tmp_path / "data", f"S{index}", seed=index)
    first = _dataset(tmp_path / "data", tmp_path / "out")
    cache = tmp_path / "out" / "cache" / "preprocessed"
    written = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert len(written) == 8 and not list(cache.glob("*.tmp*"))  # images, palette, labels, record per subject
    again = _dataset(tmp_path / "data", tmp_path / "out")
    assert again.content_hash() == first.content_hash()
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == written
    write_subject(tmp_path / "data", "S1", seed=99)
    changed = _dataset(tmp_path / "data", tmp_path / "out")
    assert changed.content_hash() != first.content_hash()
    new_files = {p.name for p in cache.iterdir()} - set(written)
    assert len(new_files) == 4 and all(name.startswith("S1-") for name in new_files)
    assert not np.array_equal(changed.load("S1").images, first.load("S1").images)
    assert np.array_equal(changed.load("S0").images, first.load("S0").images)


def _expect_error(tmp_path: Path, match: str) -> None:
    with pytest.raises(DataError, match=match):
        _dataset(tmp_path / "data", tmp_path / "out")


def test_missing_modality(tmp_path: Path):
    write_subject(tmp_path / "data", "S0")
    write_subject(tmp_path / "data", "S1", skip=("flair",))
    _expect_error(tmp_path, r"S1: missing flair")


def test_missing_modality_2023(tmp_path: Path):
    write_subject(tmp_path / "data", "S0", naming="2023", skip=("t2f", "seg"))
    _expect_error(tmp_path, r"missing t2f, seg")


def test_seg_shape_differs(tmp_path: Path):
    folder = write_subject(tmp_path / "data", "S0")
    nib.save(nib.Nifti1Image(np.zeros((12, 10, 7), np.uint8), np.eye(4)), folder / "S0_seg.nii.gz")
    _expect_error(tmp_path, r"S0_seg.nii.gz: shape \(12, 10, 7\) differs")


def test_affine_differs(tmp_path: Path):
    folder = write_subject(tmp_path / "data", "S0")
    nib.save(nib.Nifti1Image(np.zeros((12, 10, 8), np.uint8), np.diag([2.0, 1, 1, 1])), folder / "S0_seg.nii.gz")
    _expect_error(tmp_path, r"S0_seg.nii.gz: affine differs")


def test_labels_outside_the_convention(tmp_path: Path):
    folder = write_subject(tmp_path / "data", "S0")
    seg = np.asarray(nib.load(folder / "S0_seg.nii.gz").dataobj).copy()
    seg[0, 0, 0] = 3  # 3 is not a 2017-2021 label
    nib.save(nib.Nifti1Image(seg, np.eye(4)), folder / "S0_seg.nii.gz")
    _expect_error(tmp_path, r"label values \[3\] outside the BraTS convention \[0, 1, 2, 4\]")


def test_unreadable_and_truncated_files(tmp_path: Path):
    folder = write_subject(tmp_path / "data", "S0")
    (folder / "S0_t2.nii.gz").write_bytes(b"this is not nifti")
    _expect_error(tmp_path, r"S0_t2.nii.gz: not a readable NIfTI")
    folder = write_subject(tmp_path / "data", "S0")
    data = (folder / "S0_flair.nii.gz").read_bytes()
    (folder / "S0_flair.nii.gz").write_bytes(data[: len(data) // 2])
    _expect_error(tmp_path, r"S0_flair.nii.gz: (cannot decode|not a readable)")


def test_empty_or_missing_folder(tmp_path: Path):
    (tmp_path / "data").mkdir()
    _expect_error(tmp_path, "no subject folders")
    with pytest.raises(DataError, match="does not exist"):
        _dataset(tmp_path / "nowhere", tmp_path / "out")


def test_gzip_header_but_bad_payload_is_caught_before_training(tmp_path: Path):
    folder = write_subject(tmp_path / "data", "S0")
    (folder / "S0_t1ce.nii.gz").write_bytes(gzip.compress(b"\x00" * 10))
    _expect_error(tmp_path, "S0_t1ce.nii.gz")


def _save_seg(folder: Path, seg: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(seg, np.eye(4)), folder / f"{folder.name}_seg.nii.gz")


@pytest.mark.parametrize(
    "value, dtype, shown",
    [(1.4, np.float64, "1.4"), (2.6, np.float32, "2.6"), (np.nan, np.float32, "nan"), (65538, np.int32, "65538")],
)
def test_labels_are_checked_before_any_cast(tmp_path: Path, value, dtype, shown: str):
    """1.4 would become 1, NaN 0 and 65538 2 if the labels were cast to a small integer type first."""
    folder = write_subject(tmp_path / "data", "S0")
    seg = np.asarray(nib.load(folder / "S0_seg.nii.gz").dataobj).astype(dtype)
    seg[0, 0, 0] = value
    _save_seg(folder, seg)
    _expect_error(tmp_path, rf"S0_seg.nii.gz: label values \[{shown}\] outside the BraTS convention \[0, 1, 2, 4\]")


def test_whole_numbers_stored_as_floats_are_accepted(tmp_path: Path):
    for index in range(2):
        folder = write_subject(tmp_path / "data", f"S{index}", seed=index)
        _save_seg(folder, np.asarray(nib.load(folder / f"S{index}_seg.nii.gz").dataobj).astype(np.float32))
    labels = np.asarray(_dataset(tmp_path / "data", tmp_path / "out").load("S0").labels)
    assert labels.dtype == np.uint8 and set(np.unique(labels).tolist()) == {0, 1, 2, 3}


def test_two_files_for_one_modality_are_named(tmp_path: Path):
    folder = write_subject(tmp_path / "data", "S0")
    _save_seg(folder, np.zeros((12, 10, 8), np.uint8))
    (folder / "S0_seg.nii.gz").rename(folder / "S0_unet_seg.nii.gz")
    write_subject(tmp_path / "data", "S0")
    _expect_error(tmp_path, r"S0: 2 files for seg \(S0_seg.nii.gz, S0_unet_seg.nii.gz\); expected exactly one")


def test_a_file_named_after_another_subject_is_named(tmp_path: Path):
    write_subject(tmp_path / "data", "S0")
    folder = write_subject(tmp_path / "data", "S1", seed=1)
    (folder / "S1_t2.nii.gz").rename(folder / "S0_t2.nii.gz")
    _expect_error(tmp_path, r"S1: S0_t2.nii.gz not named after the subject folder \(expected S1_<modality>.nii.gz\)")


def test_hidden_files_and_folders_are_ignored(tmp_path: Path):
    root = tmp_path / "data"
    for index in range(2):
        write_subject(root, f"S{index}", seed=index)
    (root / ".ipynb_checkpoints").mkdir()
    for path in (root / "S0").iterdir():  # a notebook's hidden copy of S0
        (root / ".ipynb_checkpoints" / path.name).write_bytes(path.read_bytes())
    write_subject(root, ".S9", seed=9)
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "S0" / "._S0_t1.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    assert _dataset(root, tmp_path / "out").subject_ids() == ["S0", "S1"]


def _link_files(source: Path, folder: Path) -> None:
    """``folder`` named as its own subject, every file a symlink to the file of ``source``."""
    folder.mkdir()
    for path in source.iterdir():
        (folder / path.name.replace(source.name, folder.name)).symlink_to(path)


def _copy_files(source: Path, folder: Path) -> None:
    """``folder`` named as its own subject, every file a byte copy of the file of ``source``."""
    folder.mkdir()
    for path in source.iterdir():
        (folder / path.name.replace(source.name, folder.name)).write_bytes(path.read_bytes())


@pytest.mark.parametrize(
    "duplicate, message",
    [
        (lambda root: (root / "S2").symlink_to(root / "S0"), r"S0 and .*S2 lead to the same folder"),
        (lambda root: _link_files(root / "S0", root / "S2"), r"S0_t1.nii.gz and .*S2_t1.nii.gz lead to the same file"),
        (lambda root: _copy_files(root / "S0", root / "S2"), r"S0_t1.nii.gz and .*S2_t1.nii.gz have identical content"),
    ],
    ids=["symlinked folder", "symlinked files", "copied subject"],
)
def test_duplicate_subjects_are_refused_by_name(tmp_path: Path, duplicate, message: str):
    root = tmp_path / "data"
    for index in range(2):
        write_subject(root, f"S{index}", seed=index)
    duplicate(root)
    _expect_error(tmp_path, rf"subjects 'S0' and 'S2' are duplicates: .*{message}")


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
        lambda path: path.write_bytes(bytes(path.stat().st_size)),
        lambda path: np.save(path, np.zeros_like(np.load(path))),
    ],
    ids=["truncated", "zeroed", "zero labels"],
)
def test_a_damaged_cache_file_is_decoded_again(tmp_path: Path, damage, capsys):
    for index in range(2):
        write_subject(tmp_path / "data", f"S{index}", seed=index)
    first = _dataset(tmp_path / "data", tmp_path / "out").load("S1")
    images, labels = np.array(first.images), np.array(first.labels)
    [path] = (tmp_path / "out" / "cache" / "preprocessed").glob("S1-*_labels.npy")
    damage(path)
    capsys.readouterr()
    again = _dataset(tmp_path / "data", tmp_path / "out").load("S1")
    assert np.array_equal(again.labels, labels) and np.array_equal(again.images, images)
    notes = re.findall(r"note: .*", capsys.readouterr().err)
    assert len(notes) == 1 and notes[0].startswith(f"note: {path}: cache file"), notes
    _dataset(tmp_path / "data", tmp_path / "out")
    assert "note:" not in capsys.readouterr().err  # the decoded-again entry is trusted again


def test_an_unchanged_cache_is_checked_by_stat_alone(tmp_path: Path, monkeypatch):
    """Preparing a large cache must not read it: only sizes and modification times are compared; a file whose time
    changed is hashed (and its record updated when the content is the same), and a same-size edit is still caught."""
    write_subject(tmp_path / "data", "S0")
    _dataset(tmp_path / "data", tmp_path / "out")
    arrays = sorted((tmp_path / "out" / "cache" / "preprocessed").glob("*.npy"))
    hashed: list[Path] = []
    real = cached.file_sha256
    monkeypatch.setattr(cached, "file_sha256", lambda path: hashed.append(Path(path)) or real(path))
    _dataset(tmp_path / "data", tmp_path / "out")
    assert hashed == []
    past = time.time() - 10
    for path in arrays:
        os.utime(path, (past, past))
    _dataset(tmp_path / "data", tmp_path / "out")  # times changed: verified by digest, record brought up to date
    assert sorted(hashed) == arrays
    hashed.clear()
    _dataset(tmp_path / "data", tmp_path / "out")
    assert hashed == []
    labels = next(path for path in arrays if path.name.endswith("_labels.npy"))
    np.save(labels, np.zeros_like(np.load(labels)))
    _dataset(tmp_path / "data", tmp_path / "out")
    assert labels in hashed and np.load(labels).any()


def test_upper_case_extensions_are_read_not_dropped(tmp_path: Path):
    """A subject written as ``S1_t1.NII.GZ`` (a Windows export, say) is one of the subjects, not silently left out."""
    write_subject(tmp_path / "data", "S0", seed=0)
    write_subject(tmp_path / "data", "S1", seed=1, extension=".NII.GZ")
    dataset = _dataset(tmp_path / "data", tmp_path / "out")
    assert dataset.subject_ids() == ["S0", "S1"]
    assert np.asarray(dataset.load("S1").labels).any()


@pytest.mark.parametrize("damage", ["{truncated", "[]", '{"/x": 1}'])
def test_an_unreadable_hash_record_is_rebuilt_with_a_note(tmp_path: Path, capsys, damage):
    write_subject(tmp_path / "data", "S0")
    first = _dataset(tmp_path / "data", tmp_path / "out").content_hash()
    (tmp_path / "out" / "cache" / "file_hashes.json").write_text(damage)
    capsys.readouterr()
    assert _dataset(tmp_path / "data", tmp_path / "out").content_hash() == first
    notes = re.findall(r"note: .*?again", capsys.readouterr().err)
    assert notes == [f"note: {tmp_path / 'out' / 'cache' / 'file_hashes.json'}: unreadable; every file is hashed again"]
