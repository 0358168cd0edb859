"""The three-level hierarchy and the choice of representative leaves."""

from __future__ import annotations

import numpy as np
import pytest

from tasksift.errors import InputError
from tasksift.harp.hierarchy import build_hierarchy


def blobs(n_per: int = 40, centres: int = 12, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dim)) * 4
    return np.concatenate([c[i] + rng.normal(size=(n_per, dim)) for i in range(centres)]).astype(np.float32)


def test_levels_nest_and_leaves_have_about_the_target_size() -> None:
    x = blobs()
    h = build_hierarchy(x, leaf_size=20, leaves_per_parent=3, parents_per_region=2, seed=0)
    assert len(h.leaf) == len(x)
    # every leaf has one parent and every parent one region
    for g in range(h.n_leaves):
        rows = h.leaf == g
        assert np.unique(h.parent[rows]).tolist() == [h.leaf_parent[g]]
    for p in range(h.n_parents):
        assert np.unique(h.region[h.parent == p]).tolist() == [h.parent_region[p]]
    sizes = h.leaf_sizes()
    assert sizes.min() >= 1 and sizes.sum() == len(x)
    assert 12 <= h.n_leaves <= 36  # 480 rows at about 20 a leaf
    assert h.n_regions == 4  # ceil(480 / (20 * 3 * 2))
    assert sum(len(m) for m in h.members()) == len(x)


def test_same_seed_same_hierarchy() -> None:
    x = blobs()
    a = build_hierarchy(x, leaf_size=20, seed=3)
    b = build_hierarchy(x, leaf_size=20, seed=3)
    assert np.array_equal(a.leaf, b.leaf)


def test_representatives_one_per_parent_nearest_the_centroid_then_more() -> None:
    x = blobs()
    h = build_hierarchy(x, leaf_size=20, leaves_per_parent=3, parents_per_region=2, seed=0)
    reps = h.representatives()
    assert len(reps) == h.n_parents
    assert sorted(h.leaf_parent[reps].tolist()) == list(range(h.n_parents))
    for g in reps:
        p = h.leaf_parent[g]
        siblings = np.flatnonzero(h.leaf_parent == p)
        dist = np.linalg.norm(h.leaf_centroids[siblings] - h.parent_centroids[p], axis=1)
        assert g == siblings[np.argmin(dist)]
    more = h.representatives(h.n_parents + 3)
    assert len(more) == h.n_parents + 3 and set(reps) <= set(more)
    assert len(h.representatives(10_000)) == h.n_leaves
    assert len(h.representatives(2)) == 2


def test_bad_leaf_size() -> None:
    with pytest.raises(InputError, match="leaf_size"):
        build_hierarchy(blobs(), leaf_size=0)
