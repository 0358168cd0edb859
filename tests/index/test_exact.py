"""Exact search over the pool matrix in place: the range search, over every row or a subset."""

from __future__ import annotations

import numpy as np

from tasksift.index.exact import pool_range_search, range_search_l2


def test_range_search_l2_finds_every_row_within_the_radius_in_row_order() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 8)).astype(np.float32)
    y = rng.normal(size=(20, 8)).astype(np.float32)
    lims, d2, rows = range_search_l2(y, x, 6.0)
    exact = ((y[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1)
    assert lims[0] == 0 and len(lims) == len(y) + 1
    for i in range(len(y)):
        hits = rows[lims[i]:lims[i + 1]]
        assert hits.tolist() == np.flatnonzero(exact[i] < 6.0).tolist()
        np.testing.assert_allclose(d2[lims[i]:lims[i + 1]], exact[i, hits], rtol=1e-4)


def test_pool_range_search_over_some_rows_answers_in_pool_rows_and_counts_its_work() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(800, 6)).astype(np.float32)
    y = x[:10]
    among = np.arange(0, 800, 3)
    stats: dict[str, int] = {}
    lims, _, rows = pool_range_search(x, 2.5, stats, among=among)(y)
    _, _, everywhere = pool_range_search(x, 2.5, stats)(y)
    full_lims = pool_range_search(x, 2.5, {})(y)[0]
    for i in range(len(y)):
        wanted = [r for r in everywhere[full_lims[i]:full_lims[i + 1]].tolist() if r % 3 == 0]
        assert rows[lims[i]:lims[i + 1]].tolist() == wanted
    assert stats["compared"] == len(y) * len(among) + len(y) * len(x)
