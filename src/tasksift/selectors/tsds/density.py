"""The densities of TSDS: ``rho_j = 1 + sum of 1 - d^2 / sigma^2`` over the pool rows within ``sigma`` of row ``j``.

:class:`DensityOracle` computes ``rho`` of the rows the solver asks for, each row once, by one of the rules
the selector's ``density`` parameter names. Choices the paper and the reference code leave open, made here:

- ``radius`` (the selector's default) is the exact density: every pool row within ``sigma``
  (:func:`radius_density`), found by the context's exact range search over the whole pool. In this process that
  is :class:`tasksift.index.pruned.PrunedRangeSearch` for pools of at least ``PRUNE_MIN_ROWS`` rows (50,000):
  a screen in bfloat16, with an error bound, rules out most pairs, and only the pairs it keeps get their
  float32 distance, so the hits are the brute force's (:func:`tasksift.index.exact.pool_range_search`, used
  below that size and on CPUs without bfloat16 units). ``manifest["density"]["exact_search"]`` records the pairs
  screened and those computed in full against the brute force's count. The reference's rule (``kde_k`` nearest
  among the union of the prefetched lists, :func:`reference_density`) stays available as ``reference``,
  searched exactly over that union by brute force. The work grows with the number of distinct rows among the
  first ``K_i + 1`` neighbours of the queries (``manifest["density"]["rows_computed"]``) times the pool's
  rows: small for a task's target examples, which share their neighbourhoods; large for targets spread over the
  whole pool. The IVF and HNSW range searches would prune more but are approximate.
- ``ivf`` is the approximate density: the same kernel sum over the rows that a two-level inverted file
  (:class:`tasksift.index.two_level.TwoLevelIVF`) finds within ``sigma``: ``density_nlist`` coarse cells
  (default ``sqrt(N) / 32``; the one pass over the pool assigns every row to one), refined lazily into cells of
  about ``density_cell_rows`` rows (default 2048) only where a needed row probes, ``density_nprobe`` fine cells
  (default 1) visited among those of its ``density_coarse_probe`` (default 1) nearest coarse cells. (With one
  fine cell visited, a second coarse cell only changes which single cell that is, and refining it costs a
  k-means and an assignment of all its rows: on the benchmark's 1,000,000-row pool, 2 refined coarse cells
  instead of 12 and the same densities.) Each row's kernel terms are summed cell by cell, one matrix product
  per probed cell and block of rows, with no list of hits kept. Hits are true neighbours at their exact
  distance, so each ``rho`` is a lower bound of the exact one (up to float32 rounding), equal to it when every
  cell is probed. How close it is depends on the data and the settings: with one fine cell probed, on the
  benchmark's 1,000,000-row pool the error was within float32 rounding on every checked row, on its 300,000-row
  pool half the rows were off by more than 1e-4 and the distribution by 0.22 in total variation
  (docs/performance.md, "TSDS"). So the probe count is tied to a measured error (:class:`CheckedDensity`): every
  request of rows draws ``density_check_rows`` of them (64), computes them exactly, and doubles
  ``density_nprobe`` and ``density_coarse_probe`` while the largest relative error among them is above
  ``density_tolerance`` (1e-3). This is a check on a sample, not a bound on every row;
  ``manifest["density"]["check"]`` records each request's settings tried and errors. ``density_tolerance=0``
  turns the check off. When the passing setting compares a row with more than a quarter of the pool, the
  inverted file saves little: the exact search takes over from there (on the benchmark's 300,000-row pool the
  check went to 64 probed cells of ~2,048 rows: 44% of the pool).
- ``auto`` (opt-in, our choice): exact while rows computed x pool rows stays within the selector's
  ``AUTO_EXACT_MAX`` (10^9 pairs, the budget ``index="auto"`` gives the exact prefetch; counted as the brute
  force would compare them, so the rule does not depend on the machine, though the pruned search computes few
  of them in full), approximate (``ivf``) for the request that would go beyond it and every later one; rows
  computed before keep their exact value. ``manifest["density"]`` records the budget, ``rows_exact``,
  ``rows_approximate`` and the inverted file's settings and work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tasksift.index.exact import RangeSearch, kernel_sums
from tasksift.index.two_level import TwoLevelIVF

#: rows of needed points handled per block by the exact range search
_CHUNK_ROWS = 4096


def _hits_per_row(rows: np.ndarray, x: np.ndarray, search: RangeSearch, chunk: int = _CHUNK_ROWS
                  ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """The hits of ``x[rows]`` in blocks of ``chunk`` rows: ``(offset of the block, position of the row in the
    block, squared distance, pool row)``, one entry per hit."""
    for lo in range(0, len(rows), chunk):
        lims, d2, ids = search(x[rows[lo:lo + chunk]])
        counts = np.diff(np.asarray(lims, dtype=np.int64))
        yield lo, np.repeat(np.arange(len(counts)), counts), np.asarray(d2, np.float32), np.asarray(ids, np.int64)


def radius_density(search: RangeSearch, x: np.ndarray, rows: np.ndarray, sigma: float,
                   chunk: int = _CHUNK_ROWS) -> np.ndarray:
    """``rho_j = sum over the pool rows l with ||x_j - x_l|| < sigma that ``search`` finds of
    1 - ||x_j - x_l||^2 / sigma^2``, summed in float64: exact with an exact search, a lower bound with one that
    finds a subset (:class:`tasksift.index.two_level.TwoLevelIVF`). The row itself adds exactly 1 whether or not
    the search finds it (its float32 distance to itself is taken as 0), so ``rho >= 1``."""
    rho = np.ones(len(rows))
    sums = getattr(search, "kernel_sums", None)  # a search that sums as it finds keeps no list of hits
    if sums is not None:
        for lo in range(0, len(rows), chunk):
            rho[lo:lo + chunk] += sums(x[rows[lo:lo + chunk]], rows[lo:lo + chunk])
        return rho
    for lo, pos, d2, ids in _hits_per_row(rows, x, search, chunk):
        rho[lo:lo + chunk] += kernel_sums(pos, d2, ids, rows[lo:lo + chunk], sigma, min(chunk, len(rows) - lo))
    return rho


def brute_density(x: np.ndarray, rows: np.ndarray, sigma: float, block: int = 65536) -> np.ndarray:
    """:func:`radius_density` with exact search, by matrix products over the whole pool, block by block: the
    same kernel terms (float32 squared distances ``|y|^2 + |x|^2 - 2 y.x``, summed in float64), the row itself
    counted as exactly 1. For a few rows (the checks of :class:`CheckedDensity`), where a range search over the
    pool costs several times more per distance than a matrix product."""
    rows = np.asarray(rows, dtype=np.int64)
    y = np.ascontiguousarray(x[rows], dtype=np.float32)
    y_norms = (y * y).sum(axis=1)
    s2 = np.float32(sigma**2)
    rho = np.ones(len(rows))
    for lo in range(0, x.shape[0], block):
        xb = np.asarray(x[lo:lo + block], dtype=np.float32)
        d2 = y @ xb.T
        d2 *= -2.0
        d2 += np.add.outer(y_norms, (xb * xb).sum(axis=1))
        np.maximum(d2, 0.0, out=d2)
        kernel = np.maximum(np.float32(1.0) - d2 / s2, np.float32(0.0))
        own = np.flatnonzero((rows >= lo) & (rows < lo + len(xb)))
        kernel[own, rows[own] - lo] = 0.0
        rho += kernel.sum(axis=1, dtype=np.float64)
    return rho


def reference_density(search: RangeSearch, x: np.ndarray, rows: np.ndarray, sigma: float, kde_k: int
                      ) -> np.ndarray:
    """The reference's rule: the kernel summed over each row's ``kde_k`` nearest rows among those ``search``
    covers (the union of the prefetched lists), found exactly. Rows beyond ``sigma`` add nothing, so only
    those within it are gathered, then cut to the ``kde_k`` nearest. The kernel is computed in float32 as
    the reference does and summed in float64."""
    rho = np.zeros(len(rows))
    s2 = np.float32(sigma**2)
    for lo, pos, d2, _ in _hits_per_row(rows, x, search):
        order = np.lexsort((d2, pos))
        pos, d2 = pos[order], d2[order]
        rank = np.arange(len(pos)) - np.searchsorted(pos, pos, side="left")
        near = rank < kde_k
        kernel = np.maximum(1.0 - d2[near] / s2, 0.0).astype(np.float64)
        rho[lo:lo + _CHUNK_ROWS] = np.bincount(pos[near], weights=kernel,
                                               minlength=min(_CHUNK_ROWS, len(rows) - lo))
    return rho


#: an approximate density: pool rows -> ``rho`` (float64)
DensityFunction = Callable[[np.ndarray], np.ndarray]


class CheckedDensity:
    """The approximate density of a :class:`TwoLevelIVF`, its probe count tied to a measured error.

    Every request draws ``check_rows`` of its rows (seeded), computes their density exactly (``exact``) and
    compares: while the largest relative error ``(exact - approximate) / exact`` on the drawn rows is above
    ``tolerance``, the index visits twice as many cells (:meth:`TwoLevelIVF.widen`), until it passes or every
    cell is visited. Then the request's other rows are computed at that setting and the drawn rows keep their
    exact values. The setting only widens, so rows computed earlier passed a check at a narrower one.
    ``checks`` records each request: rows, rows checked, the settings tried and the error at each.
    ``tolerance=0`` checks nothing (the index's settings as given). ``check``: the exact density of the drawn
    rows (default ``exact``; the selector passes :func:`brute_density`, cheaper for a few rows).

    When the setting that passes compares each row with more than ``EXACT_SHARE`` of the pool, the inverted file
    saves nothing over the exact search: that request's other rows, and every later request, are computed by
    ``exact`` (``exact_rows`` counts them)."""

    #: compared rows per searched row, as a share of the pool, above which the exact search is used instead
    EXACT_SHARE = 0.25

    def __init__(self, ivf: TwoLevelIVF, exact: DensityFunction, radius2: float, *, tolerance: float,
                 check_rows: int, seed: int, check: DensityFunction | None = None) -> None:
        self.ivf, self.exact, self.radius2 = ivf, exact, float(radius2)
        self.check = check if check is not None else exact
        self.tolerance, self.check_rows = float(tolerance), int(check_rows)
        self.rng = np.random.default_rng([seed, 7])
        self.checks: list[dict[str, Any]] = []
        self.rows_checked = 0
        self.exact_rows = 0
        self.use_exact = False

    def approximate(self, rows: np.ndarray) -> np.ndarray:
        return 1.0 + self.ivf.kernel_sums(rows, self.radius2)

    def _exact(self, rows: np.ndarray) -> np.ndarray:
        self.exact_rows += len(rows)
        return self.exact(rows)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        if self.use_exact:
            return self._exact(rows)
        if self.tolerance <= 0 or len(rows) == 0:
            return self.approximate(rows)
        drawn = np.sort(self.rng.choice(len(rows), min(self.check_rows, len(rows)), replace=False))
        exact = self.check(rows[drawn])
        self.rows_checked += len(drawn)
        tried = []
        while True:
            compared = self.ivf.stats["compared"]
            error = float(np.max((exact - self.approximate(rows[drawn])) / exact))
            share = (self.ivf.stats["compared"] - compared) / len(drawn) / len(self.ivf.x)
            tried.append({"nprobe": self.ivf.nprobe, "coarse_probe": self.ivf.coarse_probe,
                          "max_relative_error": error, "compared_share": round(float(share), 6)})
            if error <= self.tolerance or not self.ivf.widen():
                break
        self.use_exact = share > self.EXACT_SHARE
        self.checks.append({"rows": len(rows), "checked": len(drawn), "tried": tried, "exact": self.use_exact})
        rest = np.ones(len(rows), dtype=bool)
        rest[drawn] = False
        rho = np.empty(len(rows))
        rho[drawn] = exact
        rho[rest] = self._exact(rows[rest]) if self.use_exact else self.approximate(rows[rest])
        return rho

    def info(self) -> dict[str, Any]:
        return {"tolerance": self.tolerance, "check_rows": self.check_rows, "rows_checked": self.rows_checked,
                "exact_share": self.EXACT_SHARE, "rows_exact_after_check": self.exact_rows, "checks": self.checks}


class DensityOracle:
    """``rho`` of pool rows on demand, each row computed once (float64): by :func:`radius_density`, or by
    :func:`reference_density` when ``kde_k`` is given; all ones when ``search`` is None (``sigma`` is 0).

    With ``approximate`` (a function building an approximate density function, called at most once), rows are
    computed exactly by ``search`` while the rows computed exactly stay within ``exact_rows``; the first request
    that would go beyond sends it, and every later one, to the approximate density. Rows computed before keep
    their exact value. ``rows`` counts all rows computed, ``rows_exact`` those by ``search``."""

    def __init__(self, x: np.ndarray, sigma: float, search: RangeSearch | None, *, kde_k: int | None = None,
                 approximate: Callable[[], DensityFunction] | None = None, exact_rows: int | None = None) -> None:
        self.x, self.sigma, self.search, self.kde_k = x, float(sigma), search, kde_k
        self.approximate, self.exact_rows = approximate, exact_rows
        self.approximate_density: DensityFunction | None = None
        # the rows computed so far, ascending, and their rho: memory grows with the rows asked for, not the pool
        self.known = np.zeros(0, dtype=np.int64)
        self.known_rho = np.zeros(0)
        self.rows = 0
        self.rows_exact = 0
        self.seconds = 0.0

    def _exact(self, count: int) -> bool:
        """Whether the next ``count`` rows are computed exactly (counted if so)."""
        within = self.exact_rows is None or self.rows_exact + count <= self.exact_rows
        if self.approximate is None or (self.approximate_density is None and within):
            self.rows_exact += count
            return True
        return False

    def _compute(self, rows: np.ndarray) -> np.ndarray:
        assert self.search is not None
        if self._exact(len(rows)):
            if self.kde_k is not None:
                return reference_density(self.search, self.x, rows, self.sigma, self.kde_k)
            return radius_density(self.search, self.x, rows, self.sigma)
        if self.approximate_density is None:
            assert self.approximate is not None
            self.approximate_density = self.approximate()
        return self.approximate_density(rows)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if self.search is None:
            return np.ones(len(rows))
        missing = np.setdiff1d(rows, self.known)  # sorted, each row once
        if len(missing):
            t0 = time.perf_counter()
            rho = self._compute(missing)
            self.rows += len(missing)
            self.seconds += time.perf_counter() - t0
            at = np.searchsorted(self.known, missing)
            self.known, self.known_rho = np.insert(self.known, at, missing), np.insert(self.known_rho, at, rho)
        return self.known_rho[np.searchsorted(self.known, rows)]
