"""Sharded exact search merged per query equals one unsharded index: order, ties, l2 / ip / cosine."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from tasksift.index import build_index
from tasksift.index.sharded import canonical_topk, exact_search, merge_range, merge_topk, shard_bounds


def brute_force(x: np.ndarray, q: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The canonical answer by definition: sort every row by (value, row)."""
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "l2":
        values = ((q64[:, None, :] - x64[None]) ** 2).sum(-1)
        key = values
    else:
        values = q64 @ x64.T
        key = -values
    rows = np.arange(len(x))
    order = np.stack([np.lexsort((rows, key[i]))[:k] for i in range(len(q))])
    return np.take_along_axis(values, order, 1), order


def sharded_search(x: np.ndarray, q: np.ndarray, k: int, metric: str, shards: int) -> tuple[np.ndarray, np.ndarray]:
    """What the Ray engine does, in process: one flat index per shard, merged per query."""
    bounds = shard_bounds(len(x), shards)
    parts = [build_index(x[a:b], metric=metric, kind="flat").search(q, k) for a, b in bounds]
    return merge_topk(parts, [a for a, _ in bounds], k, metric != "l2")


@pytest.fixture(scope="module")
def tied() -> tuple[np.ndarray, np.ndarray]:
    """Small integers: many exact ties in every metric, and exact duplicate rows."""
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, size=(3000, 8)).astype(np.float32)
    x[x.sum(axis=1) == 0, 0] = 1  # no zero rows (cosine)
    x[100:110] = x[2900]  # duplicates on both sides of shard edges
    q = rng.integers(-2, 3, size=(25, 8)).astype(np.float32)  # 25 queries: faiss's BLAS path
    q[q.sum(axis=1) == 0, 0] = 1
    return x, q


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_sharded_equals_unsharded_with_ties(tied, metric: str, shards: int) -> None:
    x, q = tied
    k = 40
    one_values, one_rows = build_index(x, metric=metric, kind="flat").search(q, k)
    values, rows = sharded_search(x, q, k, metric, shards)
    assert rows.tolist() == one_rows.tolist()
    np.testing.assert_array_equal(values, one_values)
    if metric != "cosine":  # integer data: l2 and ip values are exact, so the brute force's ties are faiss's
        _, expected = brute_force(x, q, k, metric)
        assert rows.tolist() == expected.tolist()


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("n_queries", [3, 30])
def test_sharded_equals_unsharded_on_random_vectors(metric: str, n_queries: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5000, 24)).astype(np.float32)
    q = rng.normal(size=(n_queries, 24)).astype(np.float32)
    one_values, one_rows = build_index(x, metric=metric, kind="flat").search(q, 50)
    values, rows = sharded_search(x, q, 50, metric, 4)
    assert rows.tolist() == one_rows.tolist()
    np.testing.assert_array_equal(values, one_values)


def test_ties_at_the_cut_keep_the_smallest_rows() -> None:
    x = np.ones((50, 4), dtype=np.float32)  # every row ties with every other
    q = np.ones((2, 4), dtype=np.float32)
    for metric in ("l2", "ip"):
        _, rows = build_index(x, metric=metric, kind="flat").search(q, 5)
        assert rows.tolist() == [[0, 1, 2, 3, 4]] * 2
        _, rows = sharded_search(x, q, 5, metric, 3)
        assert rows.tolist() == [[0, 1, 2, 3, 4]] * 2


def test_exact_search_asks_deeper_only_while_a_tie_runs_past_the_cut() -> None:
    x = np.zeros((100, 2), dtype=np.float32)
    x[:, 0] = np.r_[np.ones(60), np.arange(2, 42)]
    q = np.zeros((1, 2), dtype=np.float32)
    depths = []

    def search(y: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        depths.append(depth)
        values, rows = faiss.knn(y, x, depth)
        return values, rows

    values, rows = exact_search(search, q, 3, len(x), larger_is_closer=False)
    assert rows.tolist() == [[0, 1, 2]] and values.tolist() == [[1.0, 1.0, 1.0]]
    assert depths == [11, 22, 44, 88]  # the 60 tied rows are all seen before the cut is trusted


def test_missing_neighbours_go_last() -> None:
    values = np.array([[0.5, np.inf, 0.1]], dtype=np.float32)
    rows = np.array([[7, -1, 3]])
    out_values, out_rows = canonical_topk(values, rows, 3, larger_is_closer=False)
    assert out_rows.tolist() == [[3, 7, -1]]
    merged_values, merged_rows = merge_topk([(values[:, :2], rows[:, :2]), (values[:, 2:], rows[:, 2:])],
                                            [0, 100], 3, False)
    assert merged_rows.tolist() == [[103, 7, -1]] and merged_values[0, 2] == np.inf


def test_merged_range_search_equals_unsharded() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4000, 16)).astype(np.float32)
    y = rng.normal(size=(30, 16)).astype(np.float32)
    radius2 = 18.0
    one = build_index(x, metric="l2", kind="flat").range_search(y, radius2)
    bounds = shard_bounds(len(x), 3)
    parts = [build_index(x[a:b], metric="l2", kind="flat").range_search(y, radius2) for a, b in bounds]
    lims, values, rows = merge_range(parts, [a for a, _ in bounds])
    np.testing.assert_array_equal(lims, one[0])
    for i in range(len(y)):
        mine = dict(zip(rows[lims[i]:lims[i + 1]].tolist(), values[lims[i]:lims[i + 1]].tolist(), strict=True))
        theirs = dict(zip(one[2][lims[i]:lims[i + 1]].tolist(), one[1][lims[i]:lims[i + 1]].tolist(), strict=True))
        assert mine == theirs
        assert rows[lims[i]:lims[i + 1]].tolist() == sorted(mine)  # shard after shard: increasing rows


def test_shard_bounds_cover_every_row_once() -> None:
    assert shard_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert shard_bounds(2, 5) == [(0, 1), (1, 2)]
    assert shard_bounds(0, 2) == []
    with pytest.raises(ValueError):
        shard_bounds(5, 0)
