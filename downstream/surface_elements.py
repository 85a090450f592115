"""Surface elements of binary masks on the half-voxel-shifted grid, with their areas (3D) or lengths (2D).

The definition of DeepMind's ``surface-distance`` package (Nikolov et al. 2021, "Clinically applicable segmentation
of head and neck anatomy for radiotherapy", arXiv:1809.04430), used by the BraTS 2023+ evaluation: the surface of a
mask is sampled at the corners of its voxels (points half a voxel off the voxel centres). A corner is a surface
element when the 2x2x2 (2x2 in 2D) voxels around it are neither all inside nor all outside the mask; its weight is
the area (length in 2D) of the marching-cubes (marching-squares) surface inside that neighbourhood.

The area table is derived here, not copied: for each of the 256 neighbourhoods (16 in 2D), the surface passes through
the midpoints of the neighbourhood's edges that join an inside and an outside voxel (marching cubes with binary
values, Lorensen & Cline 1987). On a face whose inside voxels lie on a diagonal, the minority voxels (the inside ones
when at most half are inside, else the outside ones) are cut off one by one; each closed polygon is triangulated to
cover the largest area at unit spacing. Under anisotropic spacing each triangle's area vector scales by the cofactors
of the spacing. This reproduces ``surface_distance.lookup_tables`` for any spacing (tests/test_surface_metrics.py).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SurfaceElements:
    """A mask's surface elements: their corners (integer indices into :func:`neighbour_codes`' grid, one row each) and
    their areas (mm²; lengths in mm in 2D)."""

    corners: np.ndarray
    areas: np.ndarray


def _corners(ndim: int) -> list[tuple[int, ...]]:
    return list(itertools.product((0, 1), repeat=ndim))


def _bit(corner: tuple[int, ...]) -> int:
    """The bit of a neighbourhood code that says whether the voxel at offset ``corner`` is inside."""
    return 1 << int("".join(map(str, corner)), 2)


def _faces(ndim: int) -> list[list[tuple[int, ...]]]:
    """The square faces of the unit cube (the square itself in 2D), each as its four corners in cyclic order."""
    cycle = ((0, 0), (0, 1), (1, 1), (1, 0))
    faces = []
    for fixed in itertools.combinations(range(ndim), ndim - 2):
        free = [axis for axis in range(ndim) if axis not in fixed]
        for values in itertools.product((0, 1), repeat=len(fixed)):
            face = []
            for u, w in cycle:
                corner = [0] * ndim
                for axis, value in zip(fixed, values):
                    corner[axis] = value
                corner[free[0]], corner[free[1]] = u, w
                face.append(tuple(corner))
            faces.append(face)
    return faces


def _face_segments(face: list[tuple[int, ...]], minority: set[tuple[int, ...]]) -> list[tuple[tuple, tuple]]:
    """Marching squares on one face: pairs of crossed edges (each edge a sorted pair of corners) joined by a segment."""
    edges = [tuple(sorted((face[i], face[(i + 1) % 4]))) for i in range(4)]
    crossed = [edge for edge in edges if (edge[0] in minority) != (edge[1] in minority)]
    if len(crossed) == 4:
        return [tuple(edge for edge in edges if corner in edge) for corner in face if corner in minority]
    return [tuple(crossed)] if crossed else []


def _polygons(ndim: int, minority: set[tuple[int, ...]]) -> list[list[np.ndarray]]:
    """The closed polygons (3D) or the segments (2D) of the surface, as lists of edge-midpoint coordinates."""
    segments = [segment for face in _faces(ndim) for segment in _face_segments(face, minority)]
    midpoint = {edge: (np.add(*edge) / 2.0) for segment in segments for edge in segment}
    if ndim == 2:
        return [[midpoint[a], midpoint[b]] for a, b in segments]
    neighbours: dict[tuple, list[tuple]] = {}
    for a, b in segments:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    polygons, visited = [], set()
    for start in neighbours:
        if start in visited:
            continue
        loop, previous, current = [start], None, start
        visited.add(start)
        while True:
            following = next(n for n in neighbours[current] if n != previous)
            if following == start:
                break
            loop.append(following)
            visited.add(following)
            previous, current = current, following
        polygons.append([midpoint[edge] for edge in loop])
    return polygons


def _largest_triangulation(polygon: list[np.ndarray]) -> list[np.ndarray]:
    """The area vectors (cross product / 2) of the triangles of the triangulation of ``polygon`` with the largest
    total area (dynamic programming over its diagonals)."""

    @functools.cache
    def best(i: int, j: int) -> tuple[float, tuple[tuple[int, int, int], ...]]:
        if j - i < 2:
            return 0.0, ()
        options = []
        for k in range(i + 1, j):
            (left, left_triangles), (right, right_triangles) = best(i, k), best(k, j)
            area = np.linalg.norm(np.cross(polygon[k] - polygon[i], polygon[j] - polygon[i])) / 2
            options.append((left + right + area, left_triangles + right_triangles + ((i, k, j),)))
        return max(options, key=lambda option: option[0])

    _, triangles = best(0, len(polygon) - 1)
    return [np.cross(polygon[k] - polygon[i], polygon[j] - polygon[i]) / 2 for i, k, j in triangles]


@functools.cache
def _element_vectors(ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Per neighbourhood code, the vectors whose spacing-scaled norms sum to its surface measure: triangle area vectors
    in 3D, segment vectors in 2D. Returns (codes, vectors): one row per vector, with the code it belongs to."""
    if ndim not in (2, 3):
        raise ValueError(f"surface elements are defined for 2D and 3D masks, not {ndim}D")
    corners = _corners(ndim)
    codes, vectors = [], []
    for code in range(1 << len(corners)):
        inside = {corner for corner in corners if code & _bit(corner)}
        minority = inside if len(inside) <= len(corners) // 2 else set(corners) - inside
        for polygon in _polygons(ndim, minority):
            parts = [polygon[1] - polygon[0]] if ndim == 2 else _largest_triangulation(polygon)
            codes += [code] * len(parts)
            vectors += parts
    return np.asarray(codes), np.asarray(vectors)


def neighbour_code_measures(spacing: Sequence[float]) -> np.ndarray:
    """Surface measure of every neighbourhood code at ``spacing`` (mm per voxel along each axis): areas in mm² for the
    256 codes of a 2x2x2 neighbourhood, lengths in mm for the 16 codes of a 2x2 one."""
    spacing = np.asarray(spacing, dtype=float)
    codes, vectors = _element_vectors(len(spacing))
    # An area vector scales by the cofactors of the spacing (s1*s2, s0*s2, s0*s1); a segment by the spacing itself.
    scale = spacing if len(spacing) == 2 else np.prod(spacing) / spacing
    return np.bincount(codes, weights=np.linalg.norm(vectors * scale, axis=1), minlength=1 << (1 << len(spacing)))


def neighbour_codes(mask: np.ndarray) -> np.ndarray:
    """The neighbourhood code of every voxel corner of ``mask``: shape ``mask.shape + 1``; the corner at index ``p``
    has the voxels ``p - 1 .. p`` (along each axis) around it, voxels outside the mask counting as outside."""
    padded = np.pad(mask.astype(np.uint8), 1)
    codes = np.zeros(tuple(n + 1 for n in mask.shape), np.uint8)
    for corner in _corners(mask.ndim):
        window = tuple(slice(offset, offset + n + 1) for offset, n in zip(corner, mask.shape))
        codes |= padded[window] * np.uint8(_bit(corner))
    return codes


def surface_elements(mask: np.ndarray, spacing: Sequence[float]) -> SurfaceElements:
    """The surface elements of a boolean ``mask`` (2D or 3D) at ``spacing``. An empty mask has none."""
    codes = neighbour_codes(mask)
    full = (1 << (1 << mask.ndim)) - 1
    on_surface = (codes != 0) & (codes != full)
    measures = neighbour_code_measures(spacing)
    return SurfaceElements(np.argwhere(on_surface), measures[codes[on_surface]])
