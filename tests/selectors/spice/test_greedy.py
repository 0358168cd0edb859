"""SPICE's greedy machinery over arrays: the inverse factor, the windows' quotas, state across windows."""

from __future__ import annotations

import numpy as np
import pytest

from tasksift.selectors.spice.greedy import InverseFactor, SelectedState, greedy_window, window_quotas
from tests.selectors.spice.helpers import logdet_gain


@pytest.mark.parametrize("dense", [True, False])
def test_every_candidates_quadratic_form_matches_a_fresh_solve(dense: bool) -> None:
    rng = np.random.default_rng(1)
    g = rng.normal(size=(50, 6)).astype(np.float32)
    factor = InverseFactor(6, 0.8, capacity=9, dense=dense)
    for row in (3, 17, 9, 30):
        factor.add(g[row].astype(np.float64))
    s = g[[3, 17, 9, 30]].astype(np.float64)
    solved = np.linalg.solve(np.eye(6) + 0.8 * s.T @ s, g.T.astype(np.float64))
    np.testing.assert_allclose(factor.quadratic(g), np.einsum("ij,ji->i", g, solved), rtol=1e-5, atol=1e-6)
    # and log(1 + alpha q) is the log-det difference, candidate by candidate
    chosen = [3, 17, 9, 30]
    gains = np.log1p(0.8 * factor.quadratic(g))
    for x in (0, 5, 44):
        assert gains[x] == pytest.approx(logdet_gain(g, chosen, x, 0.8), rel=1e-4, abs=1e-6)


def test_window_quotas_share_the_budget_by_size() -> None:
    assert window_quotas([10, 10, 10, 10], 12) == [3, 3, 3, 3]
    assert window_quotas([128, 128, 44], 30) == [13, 13, 4]
    assert window_quotas([5, 1], 6) == [5, 1]
    assert sum(window_quotas([7, 3, 9], 11)) == 11


def test_greedy_state_carries_across_windows() -> None:
    g = np.random.default_rng(9).normal(size=(20, 4)).astype(np.float32)
    state = SelectedState("exact", 1.0, 4, 6)
    first, _ = greedy_window(g[:10], 3, state, lam=0.0, omega=None)
    second, _ = greedy_window(g[10:], 3, state, lam=0.0, omega=None)
    chosen = [p.local for p in first]
    for pick in second:
        assert pick.gain == pytest.approx(logdet_gain(g, chosen, 10 + pick.local, 1.0), rel=1e-4)
        chosen.append(10 + pick.local)
