"""Drawing the selection from the pool probability."""

from __future__ import annotations

import numpy as np
import pytest

from tasksift.selectors.tsds.selector import TSDSSelector
from tasksift.util.errors import InputError
from tests.selectors.tsds.helpers import clustered


def test_without_replacement_draws_distinct_rows() -> None:
    x, q = clustered(5, n=700, m=10)
    sel = TSDSSelector(40, sampling="without_replacement").fit(x, q).selection_
    assert len(sel) == 40 and np.all(sel.weights == 1)
    support = len(sel.tables["probability"])
    with pytest.raises(InputError, match="non-zero probability"):
        TSDSSelector(support + 1, sampling="without_replacement").fit(x, q)


def test_multinomial_budget_may_exceed_the_pool() -> None:
    x, q = clustered(6, n=60, m=4)
    sel = TSDSSelector(500).fit(x, q).selection_
    assert sel.weights.sum() == 500


def test_pool_probability_sums_each_rows_mass_and_names_its_first_largest_sender() -> None:
    from tasksift.selectors.tsds.sampling import pool_probability

    rng = np.random.default_rng(3)
    m, width = 6, 5
    neighbours = rng.integers(1_000_000, 1_000_012, size=(m, width))  # large row numbers, few distinct
    masses = np.round(rng.random((m, width)), 1)  # ties on purpose
    masses[rng.random((m, width)) < 0.3] = 0.0
    dist, density = rng.random((m, width)), 1 + rng.random((m, width))
    got = pool_probability(masses, neighbours, dist, density)
    expected: dict[int, list] = {}
    for i in range(m):  # by hand: row -> [total, best mass, its (query, column)], first query on ties
        for j in range(width):
            if masses[i, j] > 0:
                entry = expected.setdefault(int(neighbours[i, j]), [0.0, -1.0, None])
                entry[0] += masses[i, j]
                if masses[i, j] > entry[1]:
                    entry[1], entry[2] = masses[i, j], (i, j)
    assert got.rows.tolist() == sorted(expected)
    np.testing.assert_allclose(got.probability, [expected[r][0] for r in sorted(expected)], rtol=1e-12)
    assert got.sender.tolist() == [expected[r][2][0] for r in sorted(expected)]
    assert got.distance.tolist() == [dist[expected[r][2]] for r in sorted(expected)]
    assert got.density.tolist() == [density[expected[r][2]] for r in sorted(expected)]
