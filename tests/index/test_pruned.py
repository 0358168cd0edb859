"""The pruned range search finds what the brute force finds: same rows per query, in the same order, at the
same distances up to float32 rounding, whatever it skips."""

from __future__ import annotations

import numpy as np
import pytest

from tasksift.index import searcher
from tasksift.index.exact import pool_range_search
from tasksift.index.pruned import PrunedRangeSearch
from tasksift.index.searcher import LocalSearch
from tasksift.selectors.tsds.density import brute_density, radius_density


def topics(seed: int, n: int, dim: int = 160, count: int = 30, spread: float = 0.35, copies: float = 0.05
           ) -> np.ndarray:
    """Rows around ``count`` random centres, a share ``copies`` of them near-copies of other rows."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(count, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, count, n)] + spread * rng.normal(size=(n, dim)) / np.sqrt(dim)
    copy = rng.choice(n, int(copies * n), replace=False)
    x[copy] = x[rng.integers(0, n, len(copy))] + 0.02 * rng.normal(size=(len(copy), dim)) / np.sqrt(dim)
    return x.astype(np.float32)


def assert_same_hits(found: tuple, brute: tuple) -> None:
    (lims, d2, rows), (lims_b, d2_b, rows_b) = found, brute
    assert np.array_equal(lims, lims_b)
    assert np.array_equal(rows, rows_b)  # same rows, each query's in increasing order
    np.testing.assert_allclose(d2, d2_b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("settings", [{}, {"cells": 1}, {"cells": 7, "dims": 8}, {"dims": 2}, {"dims": 0},
                                      {"block": 5, "cells": 40}])
def test_finds_what_the_brute_force_finds(settings: dict) -> None:
    x = topics(0, 3000)
    rng = np.random.default_rng(1)
    y = np.concatenate([x[rng.choice(len(x), 300, replace=False)], topics(2, 40)])  # pool rows and others
    stats: dict[str, int] = {}
    search = PrunedRangeSearch(x, 0.45, stats, **settings)
    brute = pool_range_search(x, 0.45, {})
    for part in (y[:250], y[250:], y[:3]):  # the first call builds; later calls reuse
        assert_same_hits(search(part), brute(part))
    assert stats["brute_force"] == (len(y) + 3) * len(x)
    if settings.get("dims") == 0:
        assert stats["compared"] == stats["brute_force"] and stats["cells"] == 0
    else:
        assert stats["cells"] == settings.get("cells", int(np.sqrt(len(x))))
        assert stats["compared"] < stats["brute_force"]


def test_rows_at_the_radius_duplicates_and_exact_distances() -> None:
    """Integer rows, so every distance is exact in float32: rows at exactly the radius are not hits (faiss's
    ``d2 < r^2``), rows just inside are, duplicates are hits at distance 0."""
    rng = np.random.default_rng(3)
    base = rng.integers(-20, 20, size=(400, 40)).astype(np.float32)
    q = base[:5]
    steps = [np.eye(40)[i] * 3 for i in range(3)]  # distance 3: on the radius
    inside = np.zeros(40)
    inside[:2] = 2  # squared distance 8 < 9
    on = np.zeros(40)
    on[:3] = (2, 2, 1)  # squared distance 9
    extra = [q[i] + s for i in range(5) for s in [*steps, inside, on, np.zeros(40)]]
    x = np.concatenate([base, np.array(extra, dtype=np.float32)])
    stats: dict[str, int] = {}
    found = PrunedRangeSearch(x, 3.0, stats, dims=4, cells=9)(q)
    assert_same_hits(found, pool_range_search(x, 3.0, {})(q))
    lims, d2, rows = found
    by_hand = ((q[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1)
    for i in range(len(q)):
        assert rows[lims[i]:lims[i + 1]].tolist() == np.flatnonzero(by_hand[i] < 9.0).tolist()
        assert d2[lims[i]:lims[i + 1]].tolist() == by_hand[i, rows[lims[i]:lims[i + 1]]].tolist()
        assert {0.0, 8.0} <= set(d2[lims[i]:lims[i + 1]].tolist())  # itself, its duplicate, the row inside


def test_densities_equal_the_brute_force_ones() -> None:
    x = topics(4, 4000)
    rows = np.random.default_rng(5).choice(len(x), 500, replace=False)
    sigma = 0.45
    pruned = radius_density(PrunedRangeSearch(x, sigma, {}), x, rows, sigma, chunk=128)
    assert (pruned > 1.5).sum() > 20  # rows with near-copies
    faiss_brute = radius_density(pool_range_search(x, sigma, {}), x, rows, sigma)
    numpy_brute = brute_density(x, rows, sigma)
    # float32 distances |y|^2 + |x|^2 - 2 y.x of near-copies lose digits to cancellation whatever the order of
    # their sums; the two brute forces differ from each other by as much
    assert np.abs(faiss_brute - numpy_brute).max() > 1e-6
    np.testing.assert_allclose(pruned, numpy_brute, rtol=1e-4)
    np.testing.assert_allclose(pruned, faiss_brute, rtol=1e-4)


def test_skips_cells_and_pairs_on_separated_clusters() -> None:
    x = topics(6, 6000, dim=256, count=60, spread=0.1, copies=0.0)
    d2 = ((x[:, None, :] - x[None, :3, :]) ** 2).sum(-1)
    y = x[(d2 < 0.25).any(axis=1)]  # the clusters of three rows: 0.1 around their centres, 1.4 from the others
    assert 200 < len(y) < 400
    stats: dict[str, int] = {}
    assert_same_hits(PrunedRangeSearch(x, 0.3, stats)(y), pool_range_search(x, 0.3, {})(y))
    assert stats["dims"] in (32, 64)  # projection chosen over the brute force
    assert stats["cell_visits"] < 0.2 * len(y) * stats["cells"]
    assert stats["projected"] < 0.2 * stats["brute_force"] and stats["compared"] < 0.1 * stats["brute_force"]


def test_uses_the_brute_force_when_the_projection_would_not_save() -> None:
    x = np.random.default_rng(7).normal(size=(2000, 48)).astype(np.float32)
    stats: dict[str, int] = {}
    assert_same_hits(PrunedRangeSearch(x, 100.0, stats)(x[:30]), pool_range_search(x, 100.0, {})(x[:30]))
    assert stats["dims"] == 0 and stats["compared"] == stats["brute_force"] == 30 * len(x)


def test_no_queries() -> None:
    lims, d2, rows = PrunedRangeSearch(topics(8, 500), 0.5, stats := {})(np.zeros((0, 160), dtype=np.float32))
    assert lims.tolist() == [0] and len(d2) == len(rows) == 0 and stats == {}


def test_local_search_prunes_whole_large_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    x = topics(9, 1000)
    assert not isinstance(LocalSearch().range_search(x, 0.5, {}), PrunedRangeSearch)  # small pool
    monkeypatch.setattr(searcher, "PRUNE_MIN_ROWS", 1000)
    assert isinstance(LocalSearch().range_search(x, 0.5, {}), PrunedRangeSearch)
    assert not isinstance(LocalSearch(prune=False).range_search(x, 0.5, {}), PrunedRangeSearch)
    assert not isinstance(LocalSearch().range_search(x, 0.5, {}, among=np.arange(10)), PrunedRangeSearch)
