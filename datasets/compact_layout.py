"""The compact cache layout: a subject's arrays cropped to its foreground, stored slice-major, images as 16-bit codes.

What a cached subject costs on disk and how fast a patch comes out of it decide whether a real cohort fits a node:
BraTS 2021's 1,251 subjects take 179 GB as full-size float32 (C, x, y, z), where an axial patch is C x P strided rows.
Here each subject is stored

* cropped to the bounding box of its foreground (any image channel non-zero, or any label): outside it, images and
  labels are zero, as the loaders leave them (BraTS and fetal images are zero outside the brain or sector; CT is zero
  below the window);
* with the axial (last) axis first, images as (z, C, x, y) and labels as (z, x, y), so the rows of an axial patch lie
  in one contiguous slab of the file;
* images as codes into a per-channel palette of their float32 values (``uint16``, at most 65,536 values per channel):
  lossless, since the loaders' float32 values come from integer scanner data (BraTS and CT NIfTI files are int16),
  whose normalised values are no more than the integers. A channel with more distinct values (an image that was
  float-valued already) keeps the subject's images float32: the cache never rounds what a benchmark measures.

:class:`StoredArray` gives the stored array back in its original geometry, dtype and axis order: a read of a region
returns the same values as the full-size float32 array held before (zero where the region leaves the crop), and
``np.asarray`` of it the whole original array. Predictions and metrics are thus computed in the original geometry.
"""

from __future__ import annotations

import errno
import mmap
import operator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

#: Version of the stored layout, part of every cache key: a cache of another layout is rebuilt, never misread.
LAYOUT_VERSION = 2
#: Codes of the image palette: uint16, so at most this many distinct values per channel.
PALETTE_SIZE = 1 << 16


@dataclass(frozen=True)
class Crop:
    """Where the stored box lies in the original (x, y, z) grid: its first voxel and the original grid's shape."""

    offset: tuple[int, int, int]
    shape: tuple[int, int, int]

    def to_record(self) -> dict:
        return {"offset": list(self.offset), "shape": list(self.shape)}

    @classmethod
    def from_record(cls, record: dict) -> Crop:
        return cls(tuple(int(v) for v in record["offset"]), tuple(int(v) for v in record["shape"]))


def foreground_crop(images: np.ndarray, labels: np.ndarray) -> tuple[Crop, tuple[slice, slice, slice]]:
    """The bounding box of ``images`` (C, x, y, z) non-zero in any channel or ``labels`` (x, y, z) non-zero, as a
    :class:`Crop` and the slices that cut it out; the whole grid when both are zero everywhere."""
    foreground = np.any(images != 0, axis=0) | (labels != 0)
    if not foreground.any():
        return Crop((0, 0, 0), labels.shape), (slice(None),) * 3
    box = []
    for axis in range(3):
        present = np.flatnonzero(np.any(foreground, axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(int(present[0]), int(present[-1]) + 1))
    return Crop(tuple(s.start for s in box), labels.shape), tuple(box)


def stored_layout_problem(
    layout: dict, images: tuple[int, ...], palette: tuple[int, ...], labels: tuple[int, ...]
) -> str:
    """What is wrong with a cache record's ``layout`` against the stored shapes of its ``images`` (z, C, x, y),
    ``palette`` (C, n) and ``labels`` (z, x, y), or "" when they fit: a crop inside the grid, labels on the images'
    crop, a palette row per channel."""
    try:
        crop = Crop.from_record(layout)
    except (KeyError, TypeError, ValueError):
        return "cache record's crop unreadable"
    extent = (*images[2:], images[0])
    if len(images) != 4 or labels != (images[0], *images[2:]) or palette[0] != images[1]:
        return "cache arrays' shapes do not fit together"
    if len(crop.offset) != 3 or len(crop.shape) != 3:
        return "cache record's crop is not 3D"
    if any(o < 0 or o + e > n for o, e, n in zip(crop.offset, extent, crop.shape)):
        return "cache record's crop leaves the grid"
    return ""


def encode_images(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``images`` (C, x, y, z) float32 as stored: (z, C, x, y) uint16 codes and a (C, n) float32 palette with
    ``palette[c][code]`` the value and code 0 the value 0 (so zero codes are zero images); float32 values and a (C, 0)
    palette when a channel has more than :data:`PALETTE_SIZE` distinct values."""
    palettes, codes = [], []
    for channel in images:
        values = np.unique(channel)
        values = np.concatenate([[0.0], values[values != 0]]).astype(np.float32)
        if len(values) > PALETTE_SIZE:
            stored = np.ascontiguousarray(np.moveaxis(images, -1, 0), dtype=np.float32)
            return stored, np.zeros((len(images), 0), np.float32)
        code = np.searchsorted(values[1:], channel) + 1
        palettes.append(values)
        codes.append(np.where(channel == 0, 0, code).astype(np.uint16))
    palette = np.zeros((len(images), max(len(p) for p in palettes)), np.float32)
    for row, values in zip(palette, palettes):
        row[: len(values)] = values
    return np.ascontiguousarray(np.moveaxis(np.stack(codes), -1, 0)), palette


def encode_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` (x, y, z) as stored: (z, x, y) uint8."""
    return np.ascontiguousarray(np.moveaxis(labels, -1, 0), dtype=np.uint8)


@dataclass(frozen=True, eq=False)
class StoredArray:
    """A cached image (C, x, y, z) or label map (x, y, z) in its original geometry, read from its stored form.

    ``stored`` holds the crop with the last logical axis first; ``palette`` (C, n) maps an image's codes to float32
    values (an empty palette: ``stored`` holds the values). Indexing takes integers and step-1 slices (and
    ``...``), reads only the stored slab the region needs and returns a new array of ``dtype``, zero outside the crop.
    ``mapping`` is the memory map ``stored`` lies in (from :func:`map_npy`), for :meth:`prefetch`.
    """

    stored: np.ndarray
    crop: Crop
    palette: np.ndarray | None = None
    mapping: MappedFile | None = None

    def prefetch(self, z: int) -> None:
        """Ask the kernel to read axial slice ``z``'s slab from disk now, in the background, if it is not in memory:
        a sampler announces a batch's slabs before reading any, so that reads from a cache larger than memory wait
        for one round of disk requests, not for one page fault after another (10x fewer waits measured on a virtual
        disk; a few microseconds per slab when the slab is in memory already)."""
        stored_z = z - self.crop.offset[2]
        if self.mapping is not None and 0 <= stored_z < self.stored.shape[0]:
            slab = self.stored.strides[0]
            self.mapping.will_need(stored_z * slab, slab)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.crop.shape if self.palette is None else (self.stored.shape[1], *self.crop.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.palette is None else np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if copy is False:
            raise ValueError("a cached array is decoded into a new array: it cannot be read without a copy")
        whole = self[...]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def _refuse(self, *_: object) -> bool:
        raise TypeError("a cached array does not compute; np.asarray() it first (or index the region you need)")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = _refuse  # not the dataclass's, nor identity

    def __getitem__(self, key) -> np.ndarray:
        offsets = (0, *self.crop.offset) if self.palette is not None else self.crop.offset
        stored_sizes = self._logical_stored_shape()
        out_shape, out_index, stored_index, inside = [], [], [], True
        for axis, item in enumerate(_expand(key, self.ndim)):
            size, offset, extent = self.shape[axis], offsets[axis], stored_sizes[axis]
            if isinstance(item, slice):
                start, stop, step = item.indices(size)
                if step != 1:
                    raise IndexError(
                        f"a cached array reads slices of step 1 only, got step {step}; np.asarray() it first"
                    )
                stop = max(stop, start)
                low, high = max(start, offset), min(stop, offset + extent)
                inside &= low < high
                out_shape.append(stop - start)
                out_index.append(slice(low - start, max(high, low) - start))
                stored_index.append(slice(low - offset, max(high, low) - offset))
            else:
                index = _integer(item, size, axis)
                inside &= offset <= index < offset + extent
                stored_index.append(index - offset)
        out = np.zeros(out_shape, self.dtype)
        if inside:
            self._read_into(out[(*out_index, ...)], stored_index)  # a view, even of a 0-d result
        return out

    def _logical_stored_shape(self) -> tuple[int, ...]:
        """The stored crop's shape in logical axis order."""
        return (*self.stored.shape[1:], self.stored.shape[0])

    def _read_into(self, target: np.ndarray, index: list) -> None:
        """Decode the stored values at ``index`` (logical axis order, inside the crop) into ``target`` (logical order)."""
        if self.palette is None or self.palette.shape[1] == 0:
            _copy_to_logical(target, np.array(self.stored[(index[-1], *index[:-1])]), index)
            return
        if not isinstance(index[0], slice):
            self._decode_channel(target, index[0], index)
            return
        for position, channel in enumerate(range(*index[0].indices(self.stored.shape[1]))):
            self._decode_channel(target[position, ...], channel, index)

    def _decode_channel(self, target: np.ndarray, channel: int, index: list) -> None:
        codes = self.stored[(index[-1], channel, *index[1:-1])].astype(np.intp)
        _copy_to_logical(target, self.palette[channel].take(codes, mode="wrap"), index)  # every code is in range


def _copy_to_logical(target: np.ndarray, block: np.ndarray, index: list) -> None:
    """``target[...] = block`` with the stored axial axis (first, where ``index`` keeps it) moved last; torch copies
    the transposition in cache-friendly tiles on every core, 1.5x as fast as numpy on a whole BraTS subject."""
    if isinstance(index[-1], slice):
        torch.from_numpy(target).copy_(torch.from_numpy(block).movedim(0, -1))
    else:
        target[...] = block


@dataclass(frozen=True)
class MappedFile:
    """A file memory-mapped read-only, and where an array's data start in it."""

    mapping: mmap.mmap
    data_offset: int

    def will_need(self, start: int, length: int) -> None:
        """``madvise(MADV_WILLNEED)`` for ``length`` bytes from ``start`` of the array's data (where the system has it)."""
        if _WILL_NEED is None:
            return
        start += self.data_offset
        aligned = start - start % mmap.PAGESIZE
        self.mapping.madvise(_WILL_NEED, aligned, min(start + length, len(self.mapping)) - aligned)


_WILL_NEED = getattr(mmap, "MADV_WILLNEED", None) if hasattr(mmap.mmap, "madvise") else None


def map_npy(path: Path) -> tuple[np.ndarray, MappedFile | None]:
    """The array of a ``.npy`` file, memory-mapped read-only as a plain ndarray (a ``np.memmap`` costs microseconds per
    slice), and its mapping; an empty array has no mapping (the system cannot map zero bytes).

    A mapping holds a file descriptor (Python duplicates it), so a sampler over a whole cohort holds two per subject:
    past the soft limit on open files (often 1,024, under BraTS 2021's 2,502), the limit is raised to the hard one."""
    try:
        return _map_npy(path)
    except OSError as error:
        if error.errno != errno.EMFILE or not _raise_open_file_limit():
            raise
        return _map_npy(path)


def npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and data offset of a ``.npy`` file, from its header alone."""
    with open(path, "rb") as handle:
        return (*_read_header(handle), handle.tell())


def _read_header(handle) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(handle)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(handle)


def _map_npy(path: Path) -> tuple[np.ndarray, MappedFile | None]:
    with open(path, "rb") as handle:
        shape, fortran_order, dtype = _read_header(handle)
        data_offset = handle.tell()
        if int(np.prod(shape)) == 0:
            return np.zeros(shape, dtype), None
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    array = np.ndarray(shape, dtype, buffer=mapping, offset=data_offset, order="F" if fortran_order else "C")
    return array, MappedFile(mapping, data_offset)


def _raise_open_file_limit() -> bool:
    """Raise this process's soft limit on open files to its hard limit (to 65,536 where the hard one is unlimited, as
    on macOS, which refuses an unlimited soft limit); whether that gave more room."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to raise
        return False
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1 << 16 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft >= wanted:
        return False
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        return False
    return True


def read_axial_patch(
    images: StoredArray, labels: StoredArray, z: int, rows: slice, columns: slice, out: tuple[np.ndarray, np.ndarray]
) -> None:
    """``images[:, rows, columns, z]`` and ``labels[rows, columns, z]`` of one cached subject written into ``out``
    (images (C, r, c) and labels (r, c), zeros): a patch sampler's fast path, where the region's codes are one slab
    of the file and decoding is one lookup per channel."""
    x0, y0, z0 = images.crop.offset
    stored_z = z - z0
    size_x, size_y = images.stored.shape[2:]
    low_x, high_x = max(rows.start, x0), min(rows.stop, x0 + size_x)
    low_y, high_y = max(columns.start, y0), min(columns.stop, y0 + size_y)
    if not 0 <= stored_z < images.stored.shape[0] or low_x >= high_x or low_y >= high_y:
        return
    stored = (stored_z, slice(low_x - x0, high_x - x0), slice(low_y - y0, high_y - y0))
    window = (slice(low_x - rows.start, high_x - rows.start), slice(low_y - columns.start, high_y - columns.start))
    images_out, labels_out = out
    labels_out[window] = labels.stored[stored]
    block = images.stored[stored[0], :, stored[1], stored[2]]
    if images.palette.shape[1] == 0:
        images_out[:, window[0], window[1]] = block
        return
    codes = block.astype(np.intp)  # one contiguous pass: take() would convert each channel's codes itself
    for channel, palette in enumerate(images.palette):
        palette.take(codes[channel], out=images_out[channel, window[0], window[1]], mode="wrap")  # codes in range


def _expand(key, ndim: int) -> tuple:
    """``key`` as one integer or slice per axis (``...`` expanded, missing trailing axes taken whole)."""
    key = key if isinstance(key, tuple) else (key,)
    if any(item is None or isinstance(item, (bool, np.bool_, np.ndarray, list)) for item in key):
        raise IndexError("a cached array takes integers, slices and ...; np.asarray() it for other indexing")
    if sum(item is Ellipsis for item in key) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in key:
        at = key.index(Ellipsis)
        key = key[:at] + (slice(None),) * (ndim - len(key) + 1) + key[at + 1 :]
    if len(key) > ndim:
        raise IndexError(f"too many indices for an array of {ndim} dimensions")
    return key + (slice(None),) * (ndim - len(key))


def _integer(item, size: int, axis: int) -> int:
    index = operator.index(item)
    index += size if index < 0 else 0
    if not 0 <= index < size:
        raise IndexError(f"index {item} is out of bounds for axis {axis} with size {size}")
    return index
