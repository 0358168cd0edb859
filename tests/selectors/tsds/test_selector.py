"""The selector end to end: against brute force, its limits (sigma 0, alpha near 1), near-duplicates, the
selection's invariants, the prefetch index, the search it asks ``ctx.search`` for, its parameters."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tasksift.index.searcher import LocalSearch
from tasksift.selectors import available
from tasksift.selectors.base import Context
from tasksift.selectors.tsds.selector import TSDSSelector
from tasksift.selectors.tsds.solver import plan_masses
from tasksift.util.errors import InputError
from tests.selectors.tsds.helpers import (
    all_densities,
    clustered,
    heap_sweep,
    probability_from,
    probability_on,
    sorted_lists,
)


@pytest.mark.parametrize("density", ["radius", "reference"])
def test_selector_equals_brute_force(density: str) -> None:
    x, q = clustered(0, n=800, m=12)
    sel = TSDSSelector(50, sigma=2.0, C=2.0, density=density, index="flat")
    sel.fit(x, q)
    length = 80  # N // 10
    dist, order = sorted_lists(x, q, length)
    if density == "radius":
        rho = all_densities(x.astype(np.float64), 2.0)
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


class RecordingSearch(LocalSearch):
    """The in-process search, recording what the selector asks of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def build(self, x: np.ndarray, **kwargs):
        self.calls.append(("build", kwargs))
        return super().build(x, **kwargs)

    def exact(self, x: np.ndarray):
        self.calls.append(("exact", {}))
        return super().exact(x)

    def range_search(self, x: np.ndarray, radius: float, stats: dict[str, int], among: np.ndarray | None = None):
        self.calls.append(("range_search", {"radius": radius, "among": among is not None}))
        return super().range_search(x, radius, stats, among=among)


@pytest.mark.parametrize(("params", "calls"), [
    ({}, [("exact", {}), ("range_search", {"radius": 0.75, "among": False})]),
    ({"index": "ivf", "density": "reference", "sigma": 2.0},
     [("build", {"metric": "l2", "kind": "ivf", "nlist": 15, "nprobe": 10, "seed": 3}),
      ("range_search", {"radius": 2.0, "among": True})]),
    ({"sigma": 0.0}, [("exact", {})]),
])
def test_every_search_goes_through_the_context(params: dict, calls: list) -> None:
    x, q = clustered(10, n=900, m=8)
    search = RecordingSearch()
    through_ctx = TSDSSelector(60, seed=3, **params).fit(x, q, ctx=Context(search=search)).selection_
    assert search.calls == calls
    default = TSDSSelector(60, seed=3, **params).fit(x, q).selection_
    assert through_ctx.indices.tolist() == default.indices.tolist()
    assert through_ctx.weights.tolist() == default.weights.tolist()


@pytest.mark.parametrize(("params", "name"), [
    ({"alpha": 1.5}, "alpha"), ({"C": 0}, "C"), ({"sigma": -1}, "sigma"), ({"metric": "ip"}, "metric"),
    ({"density": "knn"}, "density"), ({"sampling": "systematic"}, "sampling"), ({"index": "lsh"}, "index"),
    ({"max_k": 0}, "max_k"), ({"density_nprobe": 0}, "density_nprobe"), ({"density_nlist": 0}, "density_nlist"),
    ({"density": "ivf", "density_cell_rows": 0}, "density_cell_rows"), ({"nlist": 0}, "nlist"),
    ({"density_tolerance": -1e-3}, "density_tolerance"), ({"kde_k": 2.5}, "kde_k"),
])
def test_bad_parameters_are_input_errors(params: dict, name: str) -> None:
    x, q = clustered(9, n=100, m=3)
    with pytest.raises(InputError, match=rf"\b{name}="):
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
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "tsds.py"
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
