"""The closed form against an LP solver and a sweep one breakpoint at a time; lazy prefixes; the bracketing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import linprog

from tasksift.selectors.tsds.solver import plan_masses, plan_objective, smallest_reaching, solve_lazily, solve_level
from tests.selectors.tsds.helpers import all_densities, heap_sweep, planted, sorted_lists


def lp_optimum(dist: np.ndarray, rho: np.ndarray, alpha: float, C: float) -> float:
    """min (alpha/C) sum g d + (1 - alpha) M t  s.t. rows of g sum to 1/M, rho_ij g_ij <= t, g >= 0."""
    m, n = dist.shape
    cost = np.concatenate([alpha / C * dist.ravel(), [(1 - alpha) * m]])
    a_eq = np.zeros((m, m * n + 1))
    for i in range(m):
        a_eq[i, i * n:(i + 1) * n] = 1.0
    a_ub = np.zeros((m * n, m * n + 1))
    a_ub[np.arange(m * n), np.arange(m * n)] = rho.ravel()
    a_ub[:, -1] = -1.0
    res = linprog(cost, A_ub=a_ub, b_ub=np.zeros(m * n), A_eq=a_eq, b_eq=np.full(m, 1.0 / m), bounds=(0, None),
                  method="highs", options={"primal_feasibility_tolerance": 1e-10,
                                           "dual_feasibility_tolerance": 1e-10})
    assert res.status == 0, res.message
    return float(res.fun)


@pytest.mark.parametrize("alpha", [0.001, 0.05, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_reaches_the_lp_optimum(seed: int, alpha: float) -> None:
    x, q = planted(seed, n=26, m=4, dim=5, copies=8)
    rho = all_densities(x.astype(np.float64), sigma=1.2)
    assert rho.max() > 2.0  # the near-duplicates weigh
    dist, order = sorted_lists(x, q, len(x))
    rho_lists = rho[order]
    level = solve_level(dist, 1.0 / rho_lists, alpha, 5.0)
    masses = plan_masses(level, 1.0 / rho_lists)
    assert masses.min() >= 0 and np.allclose(masses.sum(axis=1), 1.0 / len(q), rtol=1e-12)
    ours = plan_objective(masses, dist, rho_lists, alpha, 5.0)
    # the same plan over the pool's rows, as the LP sees it
    pool_dist = np.take_along_axis(dist, np.argsort(order, 1), 1)
    pool_rho = np.broadcast_to(rho, pool_dist.shape)
    plan = np.zeros(pool_dist.shape)
    np.put_along_axis(plan, order[:, :masses.shape[1]], masses, 1)
    assert plan_objective(plan, pool_dist, pool_rho, alpha, 5.0) == pytest.approx(ours, rel=1e-12)
    assert ours == pytest.approx(lp_optimum(pool_dist, pool_rho, alpha, 5.0), rel=1e-7)


def test_tiny_alpha_stops_at_a_wall_and_is_still_optimal() -> None:
    x, q = planted(4, n=20, m=3, dim=4, copies=6)
    rho = all_densities(x.astype(np.float64), sigma=1.0)
    dist, order = sorted_lists(x, q, len(x))
    level = solve_level(dist, 1.0 / rho[order], 1e-4, 5.0)
    assert level.stopped_by == "wall"
    masses = plan_masses(level, 1.0 / rho[order])
    lp = lp_optimum(np.take_along_axis(dist, np.argsort(order, 1), 1), np.broadcast_to(rho, (3, 20)), 1e-4, 5.0)
    assert plan_objective(masses, dist, rho[order], 1e-4, 5.0) == pytest.approx(lp, rel=1e-7)


@pytest.mark.parametrize("alpha", [0.02, 0.5, 0.97])
def test_vectorised_sweep_equals_a_sweep_one_breakpoint_at_a_time(alpha: float) -> None:
    rng = np.random.default_rng(7)
    dist = np.sort(rng.uniform(0.5, 3.0, size=(40, 60)), axis=1)
    rho = 1.0 + rng.exponential(3.0, size=(40, 60))
    level = solve_level(dist, 1.0 / rho, alpha, 5.0, whole_pool=False)
    s, filled = heap_sweep(dist, rho, alpha, 5.0)
    assert level.s == pytest.approx(s, rel=1e-12)
    assert level.filled.tolist() == filled.tolist()
    if alpha == 0.02:  # every list runs out before the condition holds: the level is the last breakpoint
        assert level.stopped_by == "last breakpoint" and (level.filled == 59).all()


def test_lazy_densities_give_the_same_level_and_read_only_a_prefix() -> None:
    rng = np.random.default_rng(3)
    m, length = 30, 2000
    dist = np.sort(rng.uniform(0.5, 3.0, size=(m, length)), axis=1)
    neighbours = np.stack([rng.permutation(5000)[:length] for _ in range(m)])
    rho_of = 1.0 + rng.exponential(2.0, size=5000)
    asked: set[int] = set()

    def density_of(rows: np.ndarray) -> np.ndarray:
        asked.update(rows.tolist())
        return rho_of[rows]

    lengths = np.full(m, length)
    level, inv_rho, rounds = solve_lazily(dist, neighbours, lengths, 0.5, 5.0, density_of, start=8)
    full = solve_level(dist, 1.0 / rho_of[neighbours], 0.5, 5.0, whole_pool=False)
    assert level.s == full.s and level.filled.tolist() == full.filled.tolist()
    assert np.array_equal(plan_masses(level, inv_rho), plan_masses(full, 1.0 / rho_of[neighbours]))
    assert len(rounds) > 1 and rounds[-1] < m * length / 4
    needed = {int(r) for i in range(m) for r in neighbours[i, :full.filled[i]]}
    assert needed <= asked and len(asked) < 2 * len(needed) + 8 * m


@pytest.mark.parametrize("seed", range(6))
def test_bracketing_finds_the_same_level_as_one_sort(seed: int) -> None:
    """The median bracketing of ``smallest_reaching`` (used above ``sort_below`` values) stops at the value a
    full sort and running sum stops at, with ties (integer breakpoints, as with rho = 1) and without."""
    rng = np.random.default_rng(seed)
    values = rng.integers(1, 50, 5000).astype(np.float64) if seed % 2 else rng.random(5000) * 40.0
    weights = rng.random(5000) * (rng.random(5000) < 0.7)
    order = np.argsort(values, kind="stable")
    running = np.cumsum(weights[order])
    for alpha, need in ((0.5, 0.3 * running[-1]), (0.9, 0.01), (0.2, 0.2 * running[-1] * 0.999), (0.5, 1e9)):
        hits = np.flatnonzero(alpha * running >= need)
        expected = float(values[order[hits[0]]]) if len(hits) else math.inf
        assert smallest_reaching(values, weights, alpha, need, sort_below=64) == expected
        assert smallest_reaching(values, weights, alpha, need) == expected
