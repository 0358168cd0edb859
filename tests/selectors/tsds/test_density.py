"""The densities: the approximate one against the exact one, the check that widens its probes, the brute
force of the checks against the range search, and ``density="auto"``."""

from __future__ import annotations

import numpy as np
import pytest

from tasksift.index import pruned as pruned_module
from tasksift.index import searcher
from tasksift.index.exact import pool_range_search
from tasksift.selectors.base import Context
from tasksift.selectors.tsds.density import CheckedDensity, brute_density, radius_density
from tasksift.selectors.tsds.selector import TSDSSelector
from tests.selectors.tsds.helpers import clustered, rho_of_computed_rows, with_planted_copies


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


def test_pruned_exact_density_selects_as_the_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    x, q = clustered(13, n=3000, m=12, dim=192)
    rng = np.random.default_rng(13)
    copies = rng.choice(len(x), 300, replace=False)
    x[copies] = x[rng.integers(0, len(x), 300)] + 0.05 * rng.normal(size=(300, 192)).astype(np.float32)
    common = {"sigma": 3.0, "C": 20.0}
    brute = TSDSSelector(50, **common).fit(x, q, ctx=Context(search=searcher.LocalSearch(prune=False)))
    monkeypatch.setattr(searcher, "PRUNE_MIN_ROWS", 0)
    monkeypatch.setattr(pruned_module, "fast_bfloat16", lambda: True)  # the screen runs on any CPU (slowly)
    pruned = TSDSSelector(50, **common).fit(x, q)
    info = pruned.selection_.manifest["density"]
    assert "exact_search" not in brute.selection_.manifest["density"]
    assert info["exact_search"]["screen"] and info["exact_search"]["cells"] == int(np.sqrt(len(x)))
    assert info["exact_search"]["brute_force_distances"] == info["rows_computed"] * len(x)
    assert info["compared_distances"] < 0.2 * info["exact_search"]["brute_force_distances"]
    assert (pruned.probability_.density > 1.5).sum() > 5  # rows with near-copies
    assert np.array_equal(pruned.probability_.rows, brute.probability_.rows)
    # float32 distances (|y|^2 + |x|^2 - 2 y.x, norms ~260 here), summed in another order than faiss's
    assert np.allclose(pruned.probability_.density, brute.probability_.density, rtol=1e-4)
    assert pruned.selection_.indices.tolist() == brute.selection_.indices.tolist()


def test_density_oracle_computes_each_row_once_and_answers_in_the_order_asked() -> None:
    from tasksift.selectors.tsds.density import DensityOracle

    x, _ = clustered(4, n=400, m=5)
    asked: list[list[int]] = []
    brute = pool_range_search(x, 1.5, {})

    def search(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        asked.append([int(np.flatnonzero((x == row).all(axis=1))[0]) for row in y])
        return brute(y)

    oracle = DensityOracle(x, 1.5, search)
    first = oracle(np.array([30, 7, 30, 200]))
    second = oracle(np.array([200, 5, 7, 399, 5]))
    assert asked == [[7, 30, 200], [5, 399]]  # each row once, ascending
    expected = brute_density(x, np.arange(len(x)), 1.5)
    np.testing.assert_allclose(first, expected[[30, 7, 30, 200]], rtol=1e-5)
    np.testing.assert_allclose(second, expected[[200, 5, 7, 399, 5]], rtol=1e-5)
    assert oracle.known.tolist() == [5, 7, 30, 200, 399] and oracle.rows == 5
