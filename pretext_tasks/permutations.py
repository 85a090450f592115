"""The fixed permutation set of jigsaw pretraining, chosen for maximal Hamming distance (Noroozi & Favaro 2016, Algorithm 1).

The classifier has to tell the permutations apart, so they should differ in as many tile
positions as possible. Greedy farthest-point selection over all 9! orderings: start from the
identity; repeatedly add the permutation whose minimum Hamming distance to those already chosen is
largest, ties broken by the largest total distance (Noroozi & Favaro's criterion) and then by the
first in lexicographic order. Fully deterministic: the same P always gives the same set.
For P = 100 the set's minimum pairwise Hamming distance is 6 (mean 8.08); for P = 1000 it is 5.

The 27 tiles of the 3D jigsaw (Taleb et al. 2020) have 27! orderings, too many to enumerate: the same greedy selection
runs over a fixed pool of :data:`CANDIDATES` random orderings (numpy's generator, seed 0) with the identity first,
ties broken by the order of the pool, so the set is again the same for the same P.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

TILES = 9
#: Random orderings the 3D set is chosen from (27 tiles).
CANDIDATES = 20_000


def _candidates(tiles: int) -> np.ndarray:
    """Every ordering of ``tiles`` tiles (9: all 9!), or the identity and :data:`CANDIDATES` - 1 random ones."""
    if tiles <= TILES:
        return np.array(list(itertools.permutations(range(tiles))), dtype=np.int8)
    rng = np.random.default_rng(0)
    shuffled = np.argsort(rng.random((CANDIDATES - 1, tiles)), axis=1).astype(np.int8)
    return np.concatenate([np.arange(tiles, dtype=np.int8)[None], shuffled])


@functools.lru_cache(maxsize=4)
def maximal_hamming_permutations(count: int, tiles: int = TILES) -> np.ndarray:
    """(count, tiles) int64 permutations of range(tiles), row 0 the identity; cached per ``count`` and ``tiles``."""
    every = _candidates(tiles)
    if not 1 <= count <= len(every):
        raise ValueError(f"the number of permutations must lie in [1, {len(every)}], got {count}")
    chosen = [0]
    min_distance = np.full(len(every), tiles + 1, np.int64)
    total_distance = np.zeros(len(every), np.int64)
    for _ in range(count - 1):
        distance = (every != every[chosen[-1]]).sum(axis=1)
        np.minimum(min_distance, distance, out=min_distance)
        total_distance += distance
        score = min_distance * (tiles * count + 1) + total_distance
        score[chosen] = -1
        chosen.append(int(score.argmax()))
    result = every[chosen].astype(np.int64)
    result.flags.writeable = False
    return result


def min_hamming_distance(permutations: np.ndarray) -> int:
    """Smallest number of positions in which two distinct rows differ."""
    distances = (permutations[:, None, :] != permutations[None, :, :]).sum(axis=2)
    np.fill_diagonal(distances, permutations.shape[1] + 1)
    return int(distances.min())
