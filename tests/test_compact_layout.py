"""The compact cache layout: what a cached subject reads back (every region, the whole array, patches drawn from it)
is exactly what the full-size float32 arrays gave, in the original geometry; its size; and old layouts rebuilt."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ssl_medbench.datasets.cached as cached_module
from ssl_medbench.datasets import DATASETS, compact_layout
from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.cached import CachedVolume
from ssl_medbench.datasets.compact_layout import PALETTE_SIZE, encode_images, foreground_crop
from ssl_medbench.datasets.patches import PatchSampler
from ssl_medbench.datasets.preprocessing import normalise
from tests.brats_files import write_subject

ROOT = Path(__file__).resolve().parents[1]


def _subject(seed: int = 0, shape=(30, 26, 12), integer: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A brain-like subject: four z-scored channels inside an off-centre ellipsoid (zero outside), a tumour label."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    centre = np.array(shape)[:, None, None, None] * np.array([0.55, 0.45, 0.5])[:, None, None, None]
    radius = np.array(shape)[:, None, None, None] * 0.3
    brain = (((grid - centre) / radius) ** 2).sum(0) < 1
    raw = rng.integers(1, 3000, (4, *shape)).astype(np.float32)
    if not integer:
        raw += rng.random(raw.shape).astype(np.float32)
    images = normalise(raw * brain)
    labels = np.zeros(shape, np.uint8)
    labels[brain & (grid[0] > shape[0] * 0.6)] = 2
    labels[brain & (grid[0] > shape[0] * 0.7)] = 3
    return images, labels


def _cached(tmp_path: Path, images: np.ndarray, labels: np.ndarray) -> Volume:
    entry = CachedVolume(tmp_path / "cache" / "subject-key", (1.0, 1.0, 2.0))
    entry.save_volume(images, labels)
    assert entry.intact()
    return entry.volume("subject")


def test_the_crop_is_the_bounding_box_of_any_channel_or_label(tmp_path):
    images = np.zeros((2, 10, 12, 8), np.float32)
    images[1, 2:5, 3, 4] = 1.0
    labels = np.zeros((10, 12, 8), np.uint8)
    labels[6, 9, 1] = 1  # a label outside the image's foreground still lies inside the crop
    crop, box = foreground_crop(images, labels)
    assert crop.offset == (2, 3, 1) and crop.shape == (10, 12, 8)
    assert box == (slice(2, 7), slice(3, 10), slice(1, 5))
    empty, whole = foreground_crop(np.zeros_like(images), np.zeros_like(labels))
    assert empty.offset == (0, 0, 0) and whole == (slice(None),) * 3


@pytest.mark.parametrize("integer", [True, False], ids=["integer-source-palette", "float-source-float32"])
def test_a_cached_subject_reads_back_exactly_in_its_original_geometry(tmp_path, integer):
    images, labels = _subject(integer=integer, shape=(30, 26, 12) if integer else (120, 110, 60))
    assert integer or len(np.unique(images[0])) > PALETTE_SIZE
    volume = _cached(tmp_path, images, labels)
    assert volume.images.shape == images.shape and volume.labels.shape == labels.shape
    assert volume.images.dtype == np.float32 and volume.labels.dtype == np.uint8
    whole = np.asarray(volume.images)
    assert whole.dtype == np.float32 and np.array_equal(whole, images)  # value for value: no rounding
    assert np.array_equal(np.asarray(volume.labels), labels)
    stored = volume.images.stored
    assert stored.dtype == (np.uint16 if integer else np.float32)
    assert stored.shape[0] < images.shape[3] and stored.shape[2] < images.shape[1]  # cropped, axial axis first


@pytest.fixture(scope="module")
def cached_subject(tmp_path_factory) -> tuple[np.ndarray, np.ndarray, Volume]:
    images, labels = _subject(seed=3)
    return images, labels, _cached(tmp_path_factory.mktemp("region"), images, labels)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_region_of_a_cached_subject_equals_that_region_of_the_array(cached_subject, data):
    images, labels, volume = cached_subject

    def index_for(size: int):
        if data.draw(st.booleans()):
            return data.draw(st.integers(-size, size - 1))
        return slice(
            data.draw(st.integers(-size - 3, size + 3) | st.none()),
            data.draw(st.integers(-size - 3, size + 3) | st.none()),
        )

    count = data.draw(st.integers(0, 4))
    if data.draw(st.booleans()):  # the leading axes, or ... and the trailing ones
        key = tuple(index_for(size) for size in images.shape[:count])
    else:
        key = (..., *(index_for(size) for size in images.shape[4 - count :]))
    assert np.array_equal(volume.images[key], images[key])
    label_key = tuple(index_for(size) for size in labels.shape[: data.draw(st.integers(0, 3))])
    assert np.array_equal(volume.labels[label_key], labels[label_key])


def test_indexing_a_cached_array_refuses_what_it_cannot_read_exactly(tmp_path):
    volume = _cached(tmp_path, *_subject())
    for key, message in [
        ((slice(None, None, 2),), "step 1 only"),
        ((np.array([0, 1]),), "integers, slices and"),
        ((None,), "integers, slices and"),
        ((0, 0, 0, 0, 0), "too many indices"),
        ((..., 0, ...), "single ellipsis"),
        ((4,), "out of bounds for axis 0 with size 4"),
    ]:
        with pytest.raises(IndexError, match=message):
            volume.images[key]


def test_a_channel_with_more_values_than_the_palette_keeps_the_subject_float32():
    images = np.arange(2 * (PALETTE_SIZE + 1), dtype=np.float32).reshape(2, PALETTE_SIZE + 1, 1, 1) + 1
    stored, palette = encode_images(images)
    assert stored.dtype == np.float32 and palette.shape == (2, 0)
    fits = images[:, : PALETTE_SIZE - 1]  # 65,535 values plus the zero every palette holds
    stored, palette = encode_images(fits)
    assert stored.dtype == np.uint16 and palette.shape == (2, PALETTE_SIZE) and np.all(palette[:, 0] == 0)


@pytest.mark.parametrize("encoding", ["palette", "float32"])
@pytest.mark.parametrize("foreground_fraction", [0.0, 0.5])
def test_patches_from_the_cache_equal_patches_from_the_full_size_arrays(
    tmp_path, monkeypatch, foreground_fraction, encoding
):
    """The same generator state draws the same patches, value for value, as the float32 (C, x, y, z) arrays the cache
    held before; the patch size exceeds the crop, so shifted and zero-padded patches are compared too."""
    if encoding == "float32":  # a palette too small for these subjects: their images are stored as float32
        monkeypatch.setattr(compact_layout, "PALETTE_SIZE", 16)
    subjects = [_subject(seed, shape=(40, 34, 9)) for seed in range(3)]
    full = [Volume(str(i), images, labels, (1.0, 1.0, 1.0)) for i, (images, labels) in enumerate(subjects)]
    compact = [_cached(tmp_path / str(i), images, labels) for i, (images, labels) in enumerate(subjects)]
    assert compact[0].images.stored.dtype == (np.float32 if encoding == "float32" else np.uint16)
    for patch_size in (16, 48):
        expected = PatchSampler(full, patch_size, foreground_fraction).sample(64, torch.Generator().manual_seed(5))
        drawn = PatchSampler(compact, patch_size, foreground_fraction).sample(64, torch.Generator().manual_seed(5))
        assert torch.equal(drawn[0], expected[0]) and torch.equal(drawn[1], expected[1])
        assert (drawn[0] == 0).any() and (drawn[0] != 0).any()  # patches reach past the brain


def test_a_cache_entry_of_another_layout_version_is_decoded_again(tmp_path, monkeypatch, capsys):
    write_subject(tmp_path / "data", "S0")
    brats = DATASETS.get("brats")
    config = brats.Config(root=str(tmp_path / "data"), test_fraction=0.5)
    brats(config, tmp_path / "out").prepare()
    cache = tmp_path / "out" / "cache" / "preprocessed"
    first = {path.name for path in cache.glob("*.npy")}
    monkeypatch.setattr(cached_module, "LAYOUT_VERSION", cached_module.LAYOUT_VERSION + 1)
    dataset = brats(config, tmp_path / "out")
    dataset.prepare()
    second = {path.name for path in cache.glob("*.npy")} - first
    assert len(second) == 3  # images, palette and labels under a new key
    record = json.loads(
        next(path for path in cache.glob("*.json") if path.name[:-5] + "_images.npy" in second).read_text()
    )
    assert record["layout"]["version"] == cached_module.LAYOUT_VERSION
    # a record claiming another version under the current key is not trusted either
    record["layout"]["version"] = 1
    entry = dataset._require_prepared()["S0"]
    entry.record.write_text(json.dumps(record))
    assert not entry.intact() and "not of layout version" in capsys.readouterr().err


def test_mapping_more_files_than_the_soft_open_file_limit_raises_it_to_the_hard_one(tmp_path):
    """A sampler over a cohort maps two files per subject; a soft limit below that (often 1,024) is raised."""
    np.save(tmp_path / "a.npy", np.arange(10, dtype=np.uint16))
    script = f"""
import resource
from pathlib import Path
from ssl_medbench.datasets.compact_layout import map_npy
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
held = [map_npy(Path({str(tmp_path / "a.npy")!r})) for _ in range(200)]
assert all(int(array[9]) == 9 for array, _ in held)
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard)
"""
    resource = pytest.importorskip("resource")
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 300:
        pytest.skip("the hard limit on open files is below what the test maps")
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "True"


def test_a_cached_array_refuses_what_would_silently_mean_something_else(tmp_path):
    volume = _cached(tmp_path, *_subject())
    for key in (True, np.True_, (0, False)):
        with pytest.raises(IndexError, match="integers, slices and"):
            volume.images[key]
    for compare in (lambda a: a == 2, lambda a: a > 0, lambda a: a != 0, bool):
        with pytest.raises(TypeError, match=r"np.asarray\(\) it first"):
            compare(volume.labels)
    with pytest.raises(ValueError, match="without a copy"):
        np.asarray(volume.images, copy=False)


def test_a_volume_that_is_not_float32_images_and_uint8_labels_is_refused_not_rounded(tmp_path):
    images, labels = _subject()
    entry = CachedVolume(tmp_path / "subject", (1.0, 1.0, 1.0))
    for bad_images, bad_labels in [
        (images.astype(np.float64), labels),
        (images, labels.astype(np.int64)),
        (images[:0], labels),
        (images[:, :-1], labels),
    ]:
        with pytest.raises(ValueError, match="a cached volume"):
            entry.save_volume(bad_images, bad_labels)


@pytest.mark.parametrize(
    "edit",
    [
        lambda layout, extent: layout | {"offset": [layout["shape"][0] - extent + 1, *layout["offset"][1:]]},
        lambda layout, extent: layout | {"offset": [-2, 0, 0]},
        lambda layout, extent: layout | {"shape": [extent - 1, *layout["shape"][1:]]},
        lambda layout, extent: layout | {"offset": "abc"},
        lambda layout, extent: {key: value for key, value in layout.items() if key != "offset"},
    ],
    ids=["past-the-grid", "negative", "grid-smaller-than-the-crop", "unreadable", "missing"],
)
def test_a_cache_record_whose_crop_does_not_fit_its_arrays_is_decoded_again(tmp_path, capsys, edit):
    write_subject(tmp_path / "data", "S0", shape=(12, 10, 8))
    brats = DATASETS.get("brats")
    config = brats.Config(root=str(tmp_path / "data"), test_fraction=0.5)
    dataset = brats(config, tmp_path / "out")
    dataset.prepare()
    expected = np.asarray(dataset.load("S0").images)
    entry = dataset._require_prepared()["S0"]
    record = json.loads(entry.record.read_text())
    record["layout"] = edit(record["layout"], np.load(entry.images, mmap_mode="r").shape[2])  # extent along x
    entry.record.write_text(json.dumps(record))
    capsys.readouterr()
    again = brats(config, tmp_path / "out")
    again.prepare()
    assert "note:" in capsys.readouterr().err
    assert np.array_equal(np.asarray(again.load("S0").images), expected)


def test_patches_of_a_volume_mixing_cached_and_plain_arrays_equal_the_plain_ones(tmp_path):
    images, labels = _subject(shape=(40, 34, 9))
    cached = _cached(tmp_path, images, labels)
    mixed = Volume("mixed", cached.images, labels.copy(), (1.0, 1.0, 1.0))  # relabelled, as a contract check does
    plain = Volume("plain", images, labels, (1.0, 1.0, 1.0))
    expected = PatchSampler([plain], 32, 0.5).sample(16, torch.Generator().manual_seed(2))
    drawn = PatchSampler([mixed], 32, 0.5).sample(16, torch.Generator().manual_seed(2))
    assert torch.equal(drawn[0], expected[0]) and torch.equal(drawn[1], expected[1])


def test_the_open_file_limit_is_raised_to_a_finite_number_where_the_hard_limit_is_unlimited(monkeypatch):
    resource = pytest.importorskip("resource")
    asked = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, resource.RLIM_INFINITY))
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: asked.append(limits))
    assert compact_layout._raise_open_file_limit() and asked == [(1 << 16, resource.RLIM_INFINITY)]

    def refuse(_, limits):
        raise ValueError("not allowed to raise maximum limit")

    monkeypatch.setattr(resource, "setrlimit", refuse)
    assert not compact_layout._raise_open_file_limit()


def test_a_patch_region_outside_the_crop_reads_zeros(tmp_path):
    """The patch read's bounds checks: slices before and after the crop along z, and regions beside it along x, y."""
    images, labels = _subject(shape=(40, 34, 9))
    volume = _cached(tmp_path, images, labels)
    x0, y0, z0 = volume.images.crop.offset
    depth = volume.images.stored.shape[0]
    assert x0 > 2 and y0 > 2 and z0 > 0 and z0 + depth < images.shape[3]
    for z, rows, columns in [
        (z0 - 1, slice(x0, x0 + 16), slice(y0, y0 + 16)),
        (z0 + depth, slice(x0, x0 + 16), slice(y0, y0 + 16)),
        (z0, slice(0, x0 - 2), slice(y0, y0 + 8)),
        (z0, slice(x0, x0 + 8), slice(0, y0 - 2)),
    ]:
        shape = (rows.stop - rows.start, columns.stop - columns.start)
        out = (np.zeros((4, *shape), np.float32), np.zeros(shape, np.int64))
        compact_layout.read_axial_patch(volume.images, volume.labels, z, rows, columns, out)
        assert np.array_equal(out[0], images[:, rows, columns, z]) and np.array_equal(out[1], labels[rows, columns, z])


def test_a_prefetch_announces_the_stored_slab_of_its_slice(tmp_path, monkeypatch):
    volume = _cached(tmp_path, *_subject(shape=(40, 34, 9)))
    announced = []
    monkeypatch.setattr(
        compact_layout.MappedFile, "will_need", lambda _, start, length: announced.append((start, length))
    )
    first = volume.images.crop.offset[2]
    volume.images.prefetch(first + 1)
    volume.images.prefetch(first - 1)  # outside the crop: nothing stored to read
    slab = volume.images.stored.strides[0]
    assert announced == [(slab, slab)]
