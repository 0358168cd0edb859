"""TSDS: task-specific data selection by optimal transport with a density penalty (docs/methods.md, "TSDS").

The selection is a probability distribution ``p`` over the pool that is close, in optimal transport, to the
uniform distribution over the target (query) examples, while the penalty ``max_ij rho_j * gamma_ij`` keeps a
cluster of near-duplicates (large kernel density ``rho``) from soaking up mass. ``budget`` draws from ``p``
are the selection.

How it runs, stage by stage (each stage's seconds go to ``manifest["stages"]``):

1. ``index``: a search over the pool from ``ctx.search`` (:class:`tasksift.index.searcher.Search`; always
   Euclidean, the ``cosine`` metric runs on L2-normalised copies, see below).
2. ``search``: the ``L = min(max_k, N // 10)`` nearest pool rows of every target example, nearest first
   (:func:`prefetch`).
3. ``density`` and ``solver``, interleaved: the closed form (:mod:`~tasksift.selectors.tsds.solver`) only reads
   the densities of each query's first ``K_i + 1`` neighbours, so densities
   (:mod:`~tasksift.selectors.tsds.density`, where the density rules are described) are computed lazily for
   growing prefixes of the lists instead of for every prefetched row.
4. ``sampling``: ``budget`` multinomial draws (the reference) or distinct rows (``without_replacement``), see
   :mod:`~tasksift.selectors.tsds.sampling`.

``metric="cosine"`` (our choice) uses the Euclidean distance between L2-normalised vectors (``sqrt(2 - 2 cos)``)
for the transport cost and the kernel, so ``sigma`` and ``C`` keep their meaning on the unit sphere.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from tasksift.index.blocks import is_mapped
from tasksift.index.search import has_unit_rows, normalize_rows
from tasksift.index.searcher import Search, SearchIndex
from tasksift.index.two_level import TwoLevelIVF
from tasksift.records import check_vectors
from tasksift.selectors.base import Context, Selection, Selector, as_float_matrix
from tasksift.selectors.registry import register
from tasksift.selectors.tsds.density import (
    CheckedDensity,
    DensityFunction,
    DensityOracle,
    brute_density,
    radius_density,
)
from tasksift.selectors.tsds.sampling import pool_probability, sample_selection
from tasksift.selectors.tsds.solver import Level, first_prefix, list_length, plan_masses, solve_lazily, solve_level
from tasksift.util.errors import InputError
from tasksift.util.params import Interval, Options
from tasksift.util.spill import scratch

DENSITY_RULES = ("auto", "radius", "ivf", "reference")
SAMPLING_RULES = ("multinomial", "without_replacement")
TSDS_METRICS = ("l2", "cosine")
INDEX_KINDS = ("auto", "flat", "ivf", "hnsw")
#: ``index="auto"`` searches exactly in place while targets x pool rows stay below this (our choice);
#: ``density="auto"`` computes densities exactly while rows computed x pool rows stay below it
AUTO_EXACT_MAX = 1_000_000_000

_COUNT = [Interval(int, 1, None)]


@register
class TSDSSelector(Selector):
    """TSDS (Liu, Karbasi, Rekatsinas, NeurIPS 2024): sample from the transport-optimal distribution.

    Parameters (defaults are the reference's config): ``alpha`` (0.5; towards 1 each query keeps its nearest
    candidate, towards 0 it spreads over wider, more diverse neighbourhoods), ``C`` (5.0, on the scale of the
    embedding norms), ``sigma`` (0.75, the kernel radius; 0 turns density off: KNN-Uniform), ``max_k``
    (5000) and ``kde_k`` (1000), both capped at ``N // 10`` as the reference does, ``metric`` (``l2``, the
    reference, or ``cosine``), ``density`` (``radius``, the default: exact, every pool row within ``sigma``;
    ``auto``: exact while the work is small, approximate above; ``ivf``: approximate, a lower bound, over a
    two-level inverted file set by ``density_nlist``, ``density_nprobe``, ``density_coarse_probe`` and
    ``density_cell_rows`` (starting values: the probes double while ``density_check_rows`` rows per request,
    computed exactly, show a relative error above ``density_tolerance``, 1e-3; 0 checks nothing);
    ``reference``: ``kde_k`` nearest among the union of the prefetched lists; see
    :mod:`tasksift.selectors.tsds.density`), ``sampling`` (``multinomial``: ``budget`` draws with replacement
    whose counts are the weights, the reference; or ``without_replacement``), ``index`` and its IVF settings
    ``nlist`` / ``nprobe``.

    ``index`` only concerns the prefetch of the ``max_k`` nearest neighbours (``density`` sets how densities
    are computed). ``"auto"`` (our choice) searches exactly, by brute force on the pool matrix in place
    (:class:`tasksift.index.exact.InPlaceSearch`: no index, no copy of the pool), while targets x pool rows
    stay below ``AUTO_EXACT_MAX`` (10^9: 500 targets over 2,000,000 rows), because one batch of target examples
    is searched once and building an index costs more than that on a few cores; above, it is
    :func:`tasksift.index.build_index`'s ``auto`` (exact up to 200,000 rows, IVF above). ``flat``, ``ivf`` and
    ``hnsw`` go to ``build_index`` as they are; IVF, whether chosen or asked for, uses the reference's settings
    unless given: ``nlist = int(sqrt(N)) // 2`` cells, ``nprobe = 10``.

    Score: ``p`` of the row. Rank: by draw count, then ``p``, descending. Reason: the target row that sent it
    the most mass, their distance, the row's density and ``p``. ``selection.tables["probability"]`` holds
    ``p`` of every row with non-zero mass.
    """

    name = "tsds"
    needs = "vectors"
    summary = "transport-optimal distribution over the pool with a near-duplicate penalty (TSDS)"
    allows_budget_above_pool = True
    parameters = {
        "alpha": [Interval(float, 0, 1)],
        "C": [Interval(float, 0, None, closed="neither")],
        "sigma": [Interval(float, 0, None)],
        "max_k": _COUNT,
        "kde_k": _COUNT,
        "metric": [Options(*TSDS_METRICS)],
        "density": [Options(*DENSITY_RULES)],
        "sampling": [Options(*SAMPLING_RULES)],
        "index": [Options(*INDEX_KINDS)],
        "nlist": [*_COUNT, None],
        "nprobe": _COUNT,
        "density_nlist": [*_COUNT, None],
        "density_nprobe": _COUNT,
        "density_coarse_probe": _COUNT,
        "density_cell_rows": _COUNT,
        "density_tolerance": [Interval(float, 0, None)],
        "density_check_rows": _COUNT,
    }

    def __init__(self, budget: int, *, seed: int = 0, alpha: float = 0.5, C: float = 5.0, sigma: float = 0.75,
                 max_k: int = 5000, kde_k: int = 1000, metric: str = "l2", density: str = "radius",
                 sampling: str = "multinomial", index: str = "auto", nlist: int | None = None,
                 nprobe: int = 10, density_nlist: int | None = None, density_nprobe: int = 1,
                 density_coarse_probe: int = 1, density_cell_rows: int = 2048, density_tolerance: float = 1e-3,
                 density_check_rows: int = 64) -> None:
        super().__init__(budget, seed=seed)
        self._keep(locals())

    def _select(self, pool: Any, target: Any, ctx: Context) -> Selection:
        stages: dict[str, float] = {}
        t0 = time.perf_counter()
        x, q = self._vectors(pool, target)
        n, m = x.shape[0], q.shape[0]
        stages["prepare"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        index = self._prefetch_index(ctx.search, x, m)
        stages["index"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        length = list_length(n, self.max_k)
        dist, neighbours, lengths = prefetch(index, q, length)
        stages["search"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        search_stats: dict[str, int] = {}
        oracle = self._density_oracle(x, neighbours, search_stats, ctx.search)
        prepare_density = time.perf_counter() - t0

        t0 = time.perf_counter()
        level, masses, rho, rounds = self._solve(dist, neighbours, lengths, oracle)
        probability = pool_probability(masses, neighbours, dist, rho)
        solve_seconds = time.perf_counter() - t0
        stages["density"] = prepare_density + oracle.seconds
        stages["solver"] = solve_seconds - oracle.seconds

        t0 = time.perf_counter()
        selection = sample_selection(probability, int(self.budget), self.sampling, self.seed)
        stages["sampling"] = time.perf_counter() - t0

        width = masses.shape[1]
        self.level_, self.masses_, self.probability_ = level, masses, probability
        self.neighbours_, self.distances_, self.densities_ = neighbours[:, :width], dist[:, :width], rho
        self.density_rows_ = oracle.known.copy()
        self.density_values_ = oracle.known_rho.copy()
        selection.manifest.update({
            "index": {**index.info(), "list_length": length},
            "stages": {k: round(v, 4) for k, v in stages.items()},
            "solver": {
                "s": level.s if math.isfinite(level.s) else None, "stopped_by": level.stopped_by,
                "K": _summary(level.filled),
                "capped_queries": int((level.filled >= lengths - 1).sum()), "support": len(probability.rows),
                "queries": m, "pool": n,
            },
            "density": self._density_info(oracle, rounds, lengths, search_stats),
        })
        return selection

    def _vectors(self, pool: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
        """Pool and target as matrices of one width; unit rows (float64 arithmetic) for ``cosine``. The pool stays
        as it is when it is float32 or float16 (a memory map stays one, read block by block); its unit rows for
        ``cosine`` go to a scratch file when it is a memory map (:func:`tasksift.index.blocks.scratch`)."""
        x = check_vectors(pool, "pool vectors", half=True)
        q = as_float_matrix(target, "target vectors")
        if x.shape[1] != q.shape[1]:
            raise InputError(f"pool vectors have {x.shape[1]} dimensions and target vectors {q.shape[1]}",
                             fix="embed both with the same model")
        if self.metric == "cosine":
            if not has_unit_rows(x):
                x = normalize_rows(x, float64=True, out=scratch(x.shape, np.float32) if is_mapped(x) else None)
            q = normalize_rows(q, float64=True)
        return x, q

    def _prefetch_index(self, search: Search, x: np.ndarray, m: int) -> SearchIndex:
        """What the prefetch searches: the pool in place, or an index (see the class docstring)."""
        n = x.shape[0]
        if self.index == "auto" and m * n <= AUTO_EXACT_MAX:
            return search.exact(x)
        nlist = self.nlist if self.nlist else max(1, math.isqrt(n) // 2)
        return search.build(x, metric="l2", kind=self.index, nlist=nlist, nprobe=self.nprobe, seed=self.seed)

    def _solve(self, dist: np.ndarray, neighbours: np.ndarray, lengths: np.ndarray, oracle: DensityOracle
               ) -> tuple[Level, np.ndarray, np.ndarray, list[int]]:
        """The level, the plan on the lists, the density of each entry the plan sends mass to (1 elsewhere) and
        the prefix entries whose densities were read in each round."""
        whole_pool = lengths >= oracle.x.shape[0]
        if oracle.search is None:
            inv_rho = np.ones(dist.shape)
            level = solve_level(dist, inv_rho, self.alpha, self.C, lengths=lengths, whole_pool=whole_pool)
            rounds = [int(lengths.sum())]
        else:
            start = first_prefix(dist, lengths, self.alpha, self.C)
            level, inv_rho, rounds = solve_lazily(dist, neighbours, lengths, self.alpha, self.C, oracle, start,
                                                  whole_pool)
        masses = plan_masses(level, inv_rho)
        width = masses.shape[1]
        sent = masses > 0
        rho = np.ones(masses.shape)
        rho[sent] = oracle(neighbours[:, :width][sent])
        return level, masses, rho, rounds

    def _density_oracle(self, x: np.ndarray, neighbours: np.ndarray, stats: dict[str, int],
                        searcher: Search) -> DensityOracle:
        sigma = self.sigma
        self.density_index_: TwoLevelIVF | None = None
        if sigma == 0:
            return DensityOracle(x, 0.0, None)
        if self.density == "radius":
            return DensityOracle(x, sigma, searcher.range_search(x, sigma, stats))
        if self.density in ("auto", "ivf"):
            exact_rows = 0 if self.density == "ivf" else AUTO_EXACT_MAX // x.shape[0]
            search = searcher.range_search(x, sigma, stats)
            return DensityOracle(x, sigma, search, exact_rows=exact_rows, approximate=lambda: self._approximate_density(
                x, sigma, lambda rows: radius_density(search, x, rows, sigma)))
        union = np.unique(neighbours)
        return DensityOracle(x, sigma, searcher.range_search(x, sigma, stats, among=union),
                             kde_k=max(1, min(self.kde_k, x.shape[0] // 10)))

    def _approximate_density(self, x: np.ndarray, sigma: float, exact: DensityFunction) -> DensityFunction:
        """The density of ``density="ivf"``: ``1 +`` the kernel sums over the rows a :class:`TwoLevelIVF` over the
        pool (kept as ``density_index_``) finds near each row, the row itself excluded, its probe count widened
        until rows checked against ``exact`` are within ``density_tolerance`` (:class:`CheckedDensity`, kept as
        ``density_check_``)."""
        n = x.shape[0]
        cells = self.density_nlist if self.density_nlist else max(1, math.isqrt(n) // 32)
        self.density_index_ = ivf = TwoLevelIVF(x, coarse_cells=cells, cell_rows=self.density_cell_rows,
                                                nprobe=self.density_nprobe, coarse_probe=self.density_coarse_probe,
                                                seed=self.seed)
        self.density_check_ = CheckedDensity(ivf, exact, sigma ** 2, tolerance=self.density_tolerance,
                                             check_rows=self.density_check_rows, seed=self.seed,
                                             check=lambda rows: brute_density(x, rows, sigma))
        return self.density_check_

    def _density_info(self, oracle: DensityOracle, rounds: list[int], lengths: np.ndarray,
                      stats: dict[str, int]) -> dict[str, Any]:
        """``manifest["density"]``: the rule, and the work of the densities computed."""
        info: dict[str, Any] = {"rule": self.density if oracle.search is not None else "off"}
        if oracle.search is None:
            return info
        info.update({
            "sigma": self.sigma, "rows_computed": oracle.rows, "rounds": len(rounds),
            "prefix_entries": rounds, "listed_entries": int(lengths.sum()),
            "compared_distances": int(stats.get("compared", 0)),
        })
        if "brute_force" in stats:  # the pruned exact search (tasksift.index.pruned): what its screen ruled out
            info["exact_search"] = {"brute_force_distances": int(stats["brute_force"]),
                                    "screened_distances": int(stats["screened"]), "screen": bool(stats["screen"]),
                                    "cells": int(stats["cells"]), "set_up_seconds": stats["build_ms"] / 1000}
        if oracle.kde_k is not None:
            info["kde_k"] = oracle.kde_k
        if oracle.approximate is not None:
            info.update({
                "exact_rows_allowed": oracle.exact_rows, "rows_exact": oracle.rows_exact,
                "rows_approximate": oracle.rows - oracle.rows_exact,
                "approximate": self.density_index_.info() if self.density_index_ is not None else None,
                "check": self.density_check_.info() if self.density_index_ is not None else None,
            })
        return info


def prefetch(index: SearchIndex, queries: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``length`` nearest pool rows of every query: Euclidean distances (float64, increasing), rows, and
    how many were found per query. Rows an approximate index did not find are padded with the last one
    found (and excluded through the lengths)."""
    d2, neighbours = index.search(queries, length)
    lengths = (neighbours >= 0).sum(axis=1).astype(np.int64)
    if lengths.min() < 1:
        raise InputError("the index found no neighbour for some target examples",
                         fix="use index=flat, or a larger nprobe")
    dist = np.sqrt(np.maximum(d2.astype(np.float64), 0.0))
    missing = neighbours < 0
    if missing.any():
        last = np.arange(len(lengths)), lengths - 1
        dist = np.where(missing, dist[last][:, None], dist)
        neighbours = np.where(missing, neighbours[last][:, None], neighbours)
    return dist, neighbours.astype(np.int64), lengths


def _summary(values: np.ndarray) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"min": float(v.min()), "median": float(np.median(v)), "mean": float(v.mean()), "max": float(v.max())}
