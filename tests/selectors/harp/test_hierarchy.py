"""The three-level hierarchy and the choice of representative leaves."""

from __future__ import annotations

import numpy as np
import pytest

from tasksift.selectors.harp.hierarchy import build_hierarchy
from tasksift.util.errors import InputError


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


def test_balance_merges_the_smallest_leaf_into_the_nearest_sibling_and_splits_large_ones() -> None:
    from tasksift.selectors.harp.hierarchy import balance_leaves

    # three groups on a line: A (5 rows at 0), B (1 row at 10), C (4 rows at 12); B is nearest C
    x = np.array([[0.0]] * 5 + [[10.0]] + [[12.0]] * 4, dtype=np.float32)
    labels = np.array([0] * 5 + [1] + [2] * 4)
    merged = balance_leaves(x, labels, leaf_size=4, min_size=2, max_size=100, seed=0)
    assert merged.tolist() == [0] * 5 + [1] * 5
    # nothing under the minimum: unchanged
    assert balance_leaves(x, labels, leaf_size=4, min_size=1, max_size=100, seed=0).tolist() == labels.tolist()
    # a parent's only leaf stays, however small
    assert balance_leaves(x[:1], np.array([0]), leaf_size=4, min_size=2, max_size=100, seed=0).tolist() == [0]
    # a leaf over the maximum is split by k-means into ceil(m / leaf_size) leaves
    two = np.array([[0.0]] * 6 + [[50.0]] * 6, dtype=np.float32)
    split = balance_leaves(two, np.zeros(12, dtype=np.int64), leaf_size=6, min_size=1, max_size=8, seed=0)
    assert split.tolist() == [0] * 6 + [1] * 6


def test_leaves_are_balanced_on_uneven_data() -> None:
    rng = np.random.default_rng(1)
    c = rng.normal(size=(6, 8)) * 4
    sizes = [400, 200, 60, 20, 5, 2]
    x = np.concatenate([c[i] + rng.normal(size=(n, 8)) for i, n in enumerate(sizes)]).astype(np.float32)
    # one parent of 687 rows, 17 k-means leaves: the blobs of 5 and 2 rows pull a centroid each
    raw = build_hierarchy(x, leaf_size=40, leaves_per_parent=100, seed=0, min_leaf_size=1, max_leaf_size=10_000)
    assert raw.n_parents == 1
    assert raw.leaf_sizes().min() < 10 and raw.leaf_sizes().max() > 80
    h = build_hierarchy(x, leaf_size=40, leaves_per_parent=100, seed=0)
    assert h.leaf_sizes().min() >= 10  # leaf_size // 4
    assert h.leaf_sizes().max() <= 80  # 2 * leaf_size
    assert h.leaf_sizes().sum() == len(x)
    with pytest.raises(InputError, match="increasing order"):
        build_hierarchy(x, leaf_size=40, min_leaf_size=50)
