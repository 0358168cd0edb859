import heapq
import importlib.util
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linprog

from tasksift.util.errors import InputError
from tasksift.selectors import available
from tasksift.selectors.tsds.selector import (
    TSDSSelector,
    plan_masses,
    plan_objective,
    smallest_reaching,
    solve_lazily,
    solve_level,
)


# -- brute-force counterparts ---------------------------------------------------------------------------------
def brute_density(x: np.ndarray, sigma: float) -> np.ndarray:
    """rho of every row from the full float64 distance matrix (the row itself adds exactly 1)."""
    d2 = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, 0.0)
    return np.maximum(1.0 - d2 / sigma**2, 0.0).sum(axis=1)


def sorted_lists(x: np.ndarray, q: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((q[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1))
    order = np.argsort(d, axis=1, kind="stable")[:, :length]
    return np.take_along_axis(d, order, 1), order


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


def heap_sweep(dist: np.ndarray, rho: np.ndarray, alpha: float, C: float) -> tuple[float, np.ndarray]:
    """The sweep of METHODS.md one breakpoint at a time (lists are prefixes of the pool: no walls)."""
    m, length = dist.shape
    b = np.cumsum(1.0 / rho, axis=1)
    heap = [(b[i, 0], i, 1) for i in range(m)]
    heapq.heapify(heap)
    filled = np.zeros(m, dtype=np.int64)
    g = np.zeros(m)
    s = 0.0
    while heap:
        s, i, k = heapq.heappop(heap)
        filled[i] = k
        g[i] = dist[i, k] * b[i, k - 1] - np.sum(dist[i, :k] / rho[i, :k])
        if alpha * g.sum() >= (1 - alpha) * m * C:
            break
        if k + 1 <= length - 1:
            heapq.heappush(heap, (b[i, k], i, k + 1))
    return s, filled


def probability_from(neighbours: np.ndarray, masses: np.ndarray, n: int) -> np.ndarray:
    p = np.zeros(n)
    np.add.at(p, neighbours[:, :masses.shape[1]], masses)
    return p


def planted(seed: int, n: int, m: int, dim: int, copies: int, noise: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Random pool with near-duplicates of a few rows, and queries near the pool."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n - copies, dim))
    sources = rng.integers(0, n - copies, copies)
    x = np.concatenate([base, base[sources] + noise * rng.normal(size=(copies, dim))])
    q = x[rng.integers(0, n, m)] + 0.5 * rng.normal(size=(m, dim))
    return x.astype(np.float32), q.astype(np.float32)


def clustered(seed: int, n: int, m: int, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, dim))
    x = centres[rng.integers(0, 12, n)] + 0.6 * rng.normal(size=(n, dim))
    q = centres[rng.integers(0, 3, m)] + 0.6 * rng.normal(size=(m, dim))
    return x.astype(np.float32), q.astype(np.float32)


# -- the closed form -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.001, 0.05, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_reaches_the_lp_optimum(seed: int, alpha: float) -> None:
    x, q = planted(seed, n=26, m=4, dim=5, copies=8)
    rho = brute_density(x.astype(np.float64), sigma=1.2)
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
    rho = brute_density(x.astype(np.float64), sigma=1.0)
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


# -- the selector against brute force ---------------------------------------------------------------------------
@pytest.mark.parametrize("density", ["radius", "reference"])
def test_selector_equals_brute_force(density: str) -> None:
    x, q = clustered(0, n=800, m=12)
    sel = TSDSSelector(50, sigma=2.0, C=2.0, density=density, index="flat")
    sel.fit(x, q)
    length = 80  # N // 10
    dist, order = sorted_lists(x, q, length)
    if density == "radius":
        rho = brute_density(x.astype(np.float64), 2.0)
    else:  # kde_k (capped at N // 10) nearest among the union of the lists
        union = np.unique(order)
        d2 = ((x[union, None, :].astype(np.float64) - x[None, union, :]) ** 2).sum(-1)
        nearest = np.sort(d2, axis=1)[:, :80]
        rho = np.ones(len(x))
        rho[union] = np.maximum(1.0 - nearest / 4.0, 0.0).sum(axis=1)
    s, filled = heap_sweep(dist, rho[order], 0.5, 2.0)
    assert sel.level_.s == pytest.approx(s, rel=1e-6)
    assert sel.level_.filled.tolist() == filled.tolist()
    expected = probability_from(order, plan_masses(sel.level_, 1.0 / rho[order]), len(x))
    table = sel.selection_.tables["probability"].to_pydict()
    ours = np.zeros(len(x))
    ours[table["row"]] = table["probability"]
    assert np.abs(ours - expected).sum() / 2 < 1e-6
    assert table["row"] == np.flatnonzero(expected > 1e-8).tolist()  # up to float32 rounding of rho


def test_sigma_zero_is_knn_uniform() -> None:
    x, q = clustered(1, n=600, m=9)
    sel = TSDSSelector(40, sigma=0.0, C=1.0).fit(x, q)
    masses = sel.masses_
    assert sel.selection_.manifest["density"]["rule"] == "off"
    k = int(np.round(1.0 / (len(q) * masses.max())))
    assert k > 1
    # each query sends 1/(M K) to each of its K nearest candidates and nothing elsewhere
    assert np.allclose(masses[masses > 0], 1.0 / (len(q) * k), rtol=1e-12)
    assert ((masses > 0).sum(axis=1) == k).all()
    _, order = sorted_lists(x, q, k)
    expected = probability_from(order, np.full((len(q), k), 1.0 / (len(q) * k)), len(x))
    p = np.zeros(len(x))
    p[sel.probability_.rows] = sel.probability_.probability
    assert np.allclose(p, expected, atol=1e-15)


def test_alpha_near_one_sends_each_query_to_its_nearest_candidate() -> None:
    x, q = clustered(2, n=600, m=9)
    sel = TSDSSelector(20, alpha=0.99999).fit(x, q)
    _, order = sorted_lists(x, q, 1)
    expected = np.bincount(order[:, 0], minlength=len(x)) / len(q)
    p = np.zeros(len(x))
    p[sel.probability_.rows] = sel.probability_.probability
    assert np.allclose(p, expected, atol=1e-12)


def planted_copies() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A clustered pool, its targets, the pool with 1,000 near-copies of one row added, and that row's group
    (the original first, then its copies)."""
    rng = np.random.default_rng(5)
    x, q = clustered(3, n=11_000, m=20)
    original = int(sorted_lists(x, q[:1], 1)[1][0, 0])
    copies = x[original] + 1e-3 * rng.normal(size=(1000, x.shape[1])).astype(np.float32)
    with_copies = np.concatenate([x, copies])
    group = np.concatenate([[original], np.arange(len(x), len(with_copies))])
    return x, q, with_copies, group


def probability_on(selector: TSDSSelector, rows: np.ndarray) -> float:
    """Total probability a fitted selector puts on ``rows``."""
    p = dict(zip(selector.probability_.rows.tolist(), selector.probability_.probability.tolist(), strict=True))
    return sum(p.get(int(r), 0.0) for r in rows)


def test_near_duplicates_do_not_soak_up_mass_with_density_on() -> None:
    x, q, with_copies, group = planted_copies()

    def mass(pool: np.ndarray, rows: np.ndarray, sigma: float) -> float:
        return probability_on(TSDSSelector(100, sigma=sigma).fit(pool, q), rows)

    alone = mass(x, group[:1], 0.75)
    assert alone > 0
    assert mass(with_copies, group, 0.75) <= 2 * alone
    assert mass(with_copies, group, 0.0) > 10 * mass(x, group[:1], 0.0)


def test_near_duplicates_do_not_soak_up_mass_with_approximate_density() -> None:
    x, q, with_copies, group = planted_copies()

    def mass(pool: np.ndarray, rows: np.ndarray, sigma: float) -> float:
        sel = TSDSSelector(100, sigma=sigma, density="ivf", density_nprobe=4, density_cell_rows=128).fit(pool, q)
        assert sigma == 0 or sel.selection_.manifest["density"]["rows_approximate"] > 0
        return probability_on(sel, rows)

    alone = mass(x, group[:1], 0.75)
    assert alone > 0
    assert mass(with_copies, group, 0.75) <= 2 * alone
    assert mass(with_copies, group, 0.0) > 10 * alone


# -- the approximate density -------------------------------------------------------------------------------------
def with_planted_copies(seed: int, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``clustered`` data where 10% of the rows are near-copies (groups of 2 to 6) of other rows."""
    rng = np.random.default_rng(seed)
    x, q = clustered(seed, n=n, m=m)
    sources = rng.integers(0, n // 2, n // 10)
    targets = rng.choice(np.arange(n // 2, n), n // 10, replace=False)
    x[targets] = x[sources] + 0.02 * rng.normal(size=(len(sources), x.shape[1])).astype(np.float32)
    return x, q


def rho_of_computed_rows(sel: TSDSSelector) -> tuple[np.ndarray, np.ndarray]:
    return sel.probability_.rows, sel.probability_.density


def test_approximate_density_probing_every_cell_equals_the_exact_one() -> None:
    x, q = with_planted_copies(10, n=3000, m=12)
    exact = TSDSSelector(50, sigma=2.0, C=2.0, density="radius").fit(x, q)
    every = TSDSSelector(50, sigma=2.0, C=2.0, density="ivf", density_nlist=5, density_cell_rows=50,
                         density_nprobe=10**6, density_coarse_probe=5).fit(x, q)
    info = every.selection_.manifest["density"]
    assert info["rule"] == "ivf" and info["rows_exact"] == 0 and info["rows_approximate"] == info["rows_computed"]
    assert info["approximate"]["coarse_cells_refined"] == 5
    assert np.array_equal(exact.probability_.rows, every.probability_.rows)
    assert np.allclose(every.probability_.density, exact.probability_.density, rtol=1e-5)
    assert np.abs(every.probability_.probability - exact.probability_.probability).sum() / 2 < 1e-6
    assert every.selection_.indices.tolist() == exact.selection_.indices.tolist()


def test_approximate_density_is_a_close_lower_bound_on_clustered_data() -> None:
    x, q = with_planted_copies(11, n=6000, m=15)
    sigma = 2.5
    sel = TSDSSelector(50, sigma=sigma, C=2.0, density="ivf", density_nlist=6, density_cell_rows=60,
                       density_nprobe=6, density_coarse_probe=2, density_tolerance=0).fit(x, q)
    rows, approx = rho_of_computed_rows(sel)
    assert len(rows) > 100
    d2 = ((x[rows, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    d2[np.arange(len(rows)), rows] = 0.0
    exact_rho = np.maximum(1.0 - d2 / sigma**2, 0.0).sum(axis=1)
    error = (exact_rho - approx) / exact_rho
    assert error.min() > -1e-5  # a lower bound, up to float32 distances
    assert 0 < error.max() < 0.5 and np.median(error) < 0.05  # approximate, and close
    assert sel.selection_.manifest["density"]["approximate"]["compared"] < 0.5 * len(x) * len(rows)
    exact = TSDSSelector(50, sigma=sigma, C=2.0, density="radius").fit(x, q)
    p_exact, p_approx = np.zeros(len(x)), np.zeros(len(x))
    p_exact[exact.probability_.rows] = exact.probability_.probability
    p_approx[rows] = sel.probability_.probability
    assert np.abs(p_exact - p_approx).sum() / 2 < 0.1


def test_auto_density_is_exact_within_its_budget_and_approximate_beyond(monkeypatch: pytest.MonkeyPatch) -> None:
    x, q = with_planted_copies(12, n=2000, m=10)
    assert TSDSSelector.param_defaults()["density"] == "radius"  # exact unless asked otherwise
    small = TSDSSelector(50, sigma=2.0, C=2.0, density="auto").fit(x, q).selection_.manifest["density"]
    assert small["rule"] == "auto" and small["rows_approximate"] == 0 and small["approximate"] is None
    monkeypatch.setattr("tasksift.selectors.tsds.selector.AUTO_EXACT_MAX", 2000 * 40)
    mixed = TSDSSelector(50, sigma=2.0, C=2.0, density="auto", density_nlist=4).fit(x, q).selection_.manifest[
        "density"]
    assert mixed["exact_rows_allowed"] == 40 and mixed["rows_exact"] <= 40
    assert mixed["rows_approximate"] > 0 and mixed["rows_exact"] + mixed["rows_approximate"] == mixed["rows_computed"]
    assert mixed["approximate"]["coarse_cells"] == 4


# -- the contract ------------------------------------------------------------------------------------------------
def test_selection_invariants_and_same_seed_same_selection() -> None:
    x, q = clustered(4, n=900, m=15)
    selector = TSDSSelector(300, seed=11).fit(x, q)
    a = selector.selection_
    # the capacity the reference asserts: no pair carries more than 1 / (M s) once weighted by density
    assert a.manifest["solver"]["capped_queries"] == 0
    assert np.all(selector.masses_ * selector.densities_ <= (1 + 1e-12) / (len(q) * selector.level_.s))
    b = TSDSSelector(300, seed=11).fit(x.copy(), q.copy()).selection_
    c = TSDSSelector(300, seed=12).fit(x, q).selection_
    table = a.tables["probability"].to_pydict()
    assert sum(table["probability"]) == pytest.approx(1.0, abs=1e-12)
    assert a.weights.sum() == 300 and np.all(a.weights >= 1)
    assert len(set(a.indices.tolist())) == len(a) and a.indices.min() >= 0 and a.indices.max() < len(x)
    assert a.indices.tolist() == b.indices.tolist() and a.weights.tolist() == b.weights.tolist()
    assert a.weights.tolist() != c.weights.tolist() or a.indices.tolist() != c.indices.tolist()
    key = list(zip(-a.weights, -a.scores, strict=True))
    assert key == sorted(key)
    p = dict(zip(table["row"], table["probability"], strict=True))
    assert a.scores.tolist() == [p[r] for r in a.indices.tolist()]
    reason = a.reasons[0]
    assert set(reason) == {"target", "distance", "density", "probability"}
    t = reason["target"]
    assert reason["distance"] == pytest.approx(float(np.linalg.norm(x[a.indices[0]] - q[t])), rel=1e-5)
    assert reason["density"] >= 1.0
    assert a.tables["probability"].schema.field("row").type == "int64"
    assert a.tables["probability"].schema.field("probability").type == "double"
    manifest = a.manifest
    assert {"index", "stages", "solver", "density"} <= set(manifest)
    assert {"index", "search", "density", "solver", "sampling"} <= set(manifest["stages"])
    assert manifest["index"]["kind"] == "flat" and manifest["index"]["list_length"] == 90
    assert manifest["index"]["in_place"]  # auto: exact search on the matrix itself
    assert {"s", "K", "capped_queries", "support"} <= set(manifest["solver"])


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


def test_cosine_equals_l2_on_normalised_vectors() -> None:
    x, q = clustered(7, n=500, m=8)
    a = TSDSSelector(30, metric="cosine", sigma=0.3, C=0.5).fit(x * 3.0, q).selection_
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    b = TSDSSelector(30, metric="l2", sigma=0.3, C=0.5).fit(xn, qn).selection_
    pa_, pb = a.tables["probability"].to_pydict(), b.tables["probability"].to_pydict()
    assert pa_["row"] == pb["row"]
    assert np.allclose(pa_["probability"], pb["probability"], rtol=1e-5)


def test_auto_builds_an_index_above_the_in_place_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    x, q = clustered(8, n=1000, m=10)
    in_place = TSDSSelector(50).fit(x, q).selection_
    monkeypatch.setattr("tasksift.selectors.tsds.selector.AUTO_EXACT_MAX", 100)
    built = TSDSSelector(50).fit(x, q).selection_
    assert in_place.manifest["index"]["in_place"] and "in_place" not in built.manifest["index"]
    assert built.manifest["index"]["kind"] == "flat"  # build_index's auto, below 200,000 rows
    assert in_place.indices.tolist() == built.indices.tolist()


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_prefetch_indexes_run_and_are_recorded(kind: str) -> None:
    x, q = clustered(8, n=3000, m=10)
    sel = TSDSSelector(50, index=kind).fit(x, q).selection_
    assert sel.manifest["index"]["kind"] == kind and sel.weights.sum() == 50
    if kind == "ivf":  # the reference's settings
        assert sel.manifest["index"]["nlist"] == int(np.sqrt(3000)) // 2 and sel.manifest["index"]["nprobe"] == 10


@pytest.mark.parametrize("params", [{"alpha": 1.5}, {"C": 0}, {"sigma": -1}, {"metric": "ip"},
                                    {"density": "knn"}, {"sampling": "systematic"}, {"index": "lsh"},
                                    {"max_k": 0}, {"density_nprobe": 0}, {"density_nlist": 0},
                                    {"density": "ivf", "density_cell_rows": 0}])
def test_bad_parameters_are_input_errors(params: dict) -> None:
    x, q = clustered(9, n=100, m=3)
    with pytest.raises(InputError):
        TSDSSelector(5, **params).fit(x, q)


def test_registered_with_the_reference_defaults() -> None:
    cls = available()["tsds"]
    assert cls is TSDSSelector
    defaults = cls.param_defaults()
    assert {k: defaults[k] for k in ("alpha", "C", "sigma", "max_k", "kde_k", "metric", "density", "sampling",
                                     "index", "nprobe")} == {
        "alpha": 0.5, "C": 5.0, "sigma": 0.75, "max_k": 5000, "kde_k": 1000, "metric": "l2", "density": "radius",
        "sampling": "multinomial", "index": "auto", "nprobe": 10}


# -- parity with the reference (external) ---------------------------------------------------------------------
REFERENCE = os.environ.get("TSDS_REFERENCE")


@pytest.mark.skipif(not REFERENCE, reason="set TSDS_REFERENCE to a checkout of github.com/ZifanL/TSDS to compare")
@pytest.mark.parametrize(("topics", "n", "m", "capped"), [(40, 6000, 30, False), (10, 4000, 30, True)])
def test_parity_with_the_reference(topics: int, n: int, m: int, capped: bool) -> None:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "tsds.py"
    spec = importlib.util.spec_from_file_location("tsds_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    geometry = bench.Geometry(topics=topics, subtopics=5)
    x, q = geometry.pool(n), geometry.targets(m, 2)
    ref = bench.run_reference(Path(REFERENCE), x, q, exact=True)
    sel = TSDSSelector(100, density="reference", index="flat").fit(x, q)
    assert (sel.selection_.manifest["solver"]["capped_queries"] == m) is capped
    ours = np.zeros(len(x))
    ours[sel.probability_.rows] = sel.probability_.probability
    assert np.abs(ours - ref["probability"]).sum() / 2 <= 1e-6


def test_checked_density_widens_its_probes_until_the_checked_rows_agree() -> None:
    x, q = with_planted_copies(11, n=6000, m=15)
    sigma = 2.5
    exact = TSDSSelector(50, sigma=sigma, C=2.0, density="radius").fit(x, q)
    p_exact = np.zeros(len(x))
    p_exact[exact.probability_.rows] = exact.probability_.probability

    def fit(tolerance: float) -> tuple[TSDSSelector, float]:
        sel = TSDSSelector(50, sigma=sigma, C=2.0, density="ivf", density_nlist=6, density_cell_rows=60,
                           density_nprobe=1, density_coarse_probe=1, density_tolerance=tolerance,
                           density_check_rows=32).fit(x, q)
        p = np.zeros(len(x))
        p[sel.probability_.rows] = sel.probability_.probability
        return sel, float(np.abs(p - p_exact).sum() / 2)

    unchecked, tv_unchecked = fit(0.0)
    checked, tv_checked = fit(1e-3)
    assert unchecked.selection_.manifest["density"]["check"]["checks"] == []
    assert tv_unchecked > 0.1  # one probed cell misses neighbours on this data
    info = checked.selection_.manifest["density"]["check"]
    first = info["checks"][0]["tried"]
    assert first[0]["max_relative_error"] > 0.1 and len(first) > 1
    assert [t["nprobe"] for t in first] == [2**i for i in range(len(first))]
    for request in info["checks"]:
        assert request["checked"] == min(32, request["rows"])
        assert request["tried"][-1]["max_relative_error"] <= 1e-3
    assert info["rows_checked"] == sum(r["checked"] for r in info["checks"])
    assert checked.selection_.manifest["density"]["approximate"]["nprobe"] == first[-1]["nprobe"]
    assert tv_checked < 1e-4
    # the checked rows keep their exact values
    rows, rho = rho_of_computed_rows(checked)
    exact_rho = dict(zip(exact.probability_.rows.tolist(), exact.probability_.density.tolist(), strict=True))
    close = [abs(rho[i] - exact_rho[r]) / exact_rho[r] for i, r in enumerate(rows.tolist()) if r in exact_rho]
    assert len(close) > 100 and max(close) < 1e-3


def test_checked_density_hands_over_to_the_exact_search_when_probing_costs_as_much(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tasksift.selectors.tsds.selector import CheckedDensity

    x, q = with_planted_copies(11, n=6000, m=15)
    common = {"sigma": 2.5, "C": 2.0}
    exact = TSDSSelector(50, density="radius", **common).fit(x, q)
    monkeypatch.setattr(CheckedDensity, "EXACT_SHARE", 0.0)
    sel = TSDSSelector(50, density="ivf", density_nlist=6, density_cell_rows=60, density_nprobe=1,
                       density_coarse_probe=1, density_check_rows=32, **common).fit(x, q)
    info = sel.selection_.manifest["density"]["check"]
    assert len(info["checks"]) == 1 and info["checks"][0]["exact"]
    assert info["rows_checked"] + info["rows_exact_after_check"] == sel.selection_.manifest["density"]["rows_computed"]
    assert np.array_equal(sel.probability_.rows, exact.probability_.rows)
    assert np.allclose(sel.probability_.density, exact.probability_.density, rtol=1e-5)  # float32 distances
    assert sel.selection_.indices.tolist() == exact.selection_.indices.tolist()


def test_brute_density_equals_the_range_search_density() -> None:
    from tasksift.selectors.tsds.selector import brute_density, pool_range_search, radius_density

    x, _ = with_planted_copies(12, n=2500, m=5)
    rows = np.array([0, 7, 1300, 2499, 1301])
    sigma = 2.5
    exact = radius_density(pool_range_search(x, sigma, {}), x, rows, sigma)
    brute = brute_density(x, rows, sigma, block=700)  # blocks that split the pool unevenly
    d2 = ((x[rows, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    d2[np.arange(len(rows)), rows] = np.inf
    by_hand = 1.0 + np.maximum(1.0 - d2 / sigma**2, 0.0).sum(axis=1)
    assert (exact > 1.5).sum() >= 3  # rows with neighbours within sigma
    assert np.allclose(brute, exact, rtol=1e-5) and np.allclose(brute, by_hand, rtol=1e-5)
