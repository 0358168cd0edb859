"""TSDS: task-specific data selection by optimal transport with a density penalty (METHODS.md, "TSDS").

The selection is a probability distribution ``p`` over the pool that is close, in optimal transport, to the
uniform distribution over the target (query) examples, while the penalty ``max_ij rho_j * gamma_ij`` keeps a
cluster of near-duplicates (large kernel density ``rho``) from soaking up mass. ``budget`` draws from ``p``
are the selection.

How it runs, stage by stage (each stage's seconds go to ``manifest["stages"]``):

1. ``index``: a faiss index over the pool (:func:`tasksift.index.build_index`, always Euclidean; the
   ``cosine`` metric runs on L2-normalised copies, see below).
2. ``search``: the ``L = min(max_k, N // 10)`` nearest pool rows of every target example, nearest first.
3. ``density`` and ``solver``, interleaved: the closed form (:func:`solve_level`) only reads the densities of
   each query's first ``K_i + 1`` neighbours, so densities are computed lazily for growing prefixes of the
   lists (:func:`solve_lazily`) instead of for every prefetched row.
4. ``sampling``: ``budget`` multinomial draws (the reference) or distinct rows (``without_replacement``).

Choices the paper and the reference code leave open, made here:

- ``density="radius"`` (default) is the exact density: every pool row within ``sigma``, found by faiss's
  brute-force range search over the whole pool (:func:`pool_range_search`, :func:`radius_density`). The
  reference's rule (``kde_k`` nearest among the union of the prefetched lists, :func:`reference_density`)
  stays available as ``density="reference"``, searched exactly over that union. Each batch of rows costs
  one brute-force pass over the pool (or the union), so the time grows with the number of distinct rows
  among the first ``K_i + 1`` neighbours of the queries (``manifest["density"]["rows_computed"]``): small
  for a task's target examples, which share their neighbourhoods; large for targets spread over the whole
  pool. No index prunes that pass exactly: the IVF and HNSW range searches are approximate.
- ``density="ivf"`` is the approximate density: the same kernel sum over the rows that a two-level inverted
  file (:class:`tasksift.index.two_level.TwoLevelIVF`) finds within ``sigma``: ``density_nlist`` coarse cells
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
  pool half the rows were off by more than 1e-4 and the distribution by 0.22 in total variation (README,
  "Performance"). So the probe count is tied to a measured error (:class:`CheckedDensity`): every request of
  rows draws ``density_check_rows`` of them (64), computes them exactly, and doubles ``density_nprobe`` and
  ``density_coarse_probe`` while the largest relative error among them is above ``density_tolerance`` (1e-3).
  This is a check on a sample, not a bound on every row; ``manifest["density"]["check"]`` records each request's
  settings tried and errors. ``density_tolerance=0`` turns the check off. When the passing setting compares a
  row with more than a quarter of the pool, the inverted file saves little: the exact search takes over from there
  (on the benchmark's 300,000-row pool the check went to 64 probed cells of ~2,048 rows: 44% of the pool).
- ``density="auto"`` (opt-in, our choice): exact while rows computed x pool rows stays within ``AUTO_EXACT_MAX``
  (10^9 distance computations, the budget ``index="auto"`` gives the exact prefetch), approximate (``ivf``) for
  the request that would go beyond it and every later one; rows computed before keep their exact value.
  ``manifest["density"]`` records the budget, ``rows_exact``, ``rows_approximate`` and the inverted file's
  settings and work.
- A query that passes every breakpoint of its list (``K_i = L - 1``) is "capped". When its list is the
  whole pool, the level stops at its "wall", where it has filled every row to capacity: that is the optimum
  (tested against an LP solver). When its list is only the nearest ``L`` rows, the full problem would have
  it spread further, beyond what was prefetched; we then do what the reference does: the level runs on and
  the query keeps the rest of its mass on its last listed neighbour. Stopping at the wall there would be
  the optimum of the truncated problem, but one query whose list is all near-duplicates would then freeze
  every other query at its nearest neighbour. ``manifest["solver"]["capped_queries"]`` counts capped
  queries (raise ``max_k`` when there are many).
- A query whose sweep stops before its first breakpoint (``K_i = 0``) sends its whole mass to its nearest
  neighbour, which the closed form allows; the reference would count that neighbour as filled and fail its
  own assertion.
- ``metric="cosine"`` uses the Euclidean distance between L2-normalised vectors (``sqrt(2 - 2 cos)``) for
  the transport cost and the kernel, so ``sigma`` and ``C`` keep their meaning on the unit sphere.
- Below 20 pool rows, where ``N // 10`` would leave fewer than two neighbours per query, lists hold two
  (the reference stops there).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tasksift.util.errors import InputError
from tasksift.index import build_index
from tasksift.index.search import NeighbourIndex
from tasksift.index.two_level import TwoLevelIVF
from tasksift.selectors import register
from tasksift.selectors.base import Selection, Selector, as_float_matrix

DENSITY_RULES = ("auto", "radius", "ivf", "reference")
SAMPLING_RULES = ("multinomial", "without_replacement")
TSDS_METRICS = ("l2", "cosine")
INDEX_KINDS = ("auto", "flat", "ivf", "hnsw")
#: rows of needed points handled per block by the exact range search
_CHUNK_ROWS = 4096
#: ``index="auto"`` searches exactly in place while targets x pool rows stay below this (our choice);
#: ``density="auto"`` computes densities exactly while rows computed x pool rows stay below it
AUTO_EXACT_MAX = 1_000_000_000


# -- the closed form ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Level:
    """Where the sweep over the global level ``s`` stopped.

    ``filled[i]`` is ``K_i``: query ``i`` gives each of its first ``K_i`` neighbours ``1 / (M s rho)`` and the
    rest of its ``1 / M`` to neighbour ``K_i + 1``. ``stopped_by`` is ``"condition"`` (the optimality
    condition of METHODS.md), ``"wall"`` (a query filled the whole pool), ``"last breakpoint"`` (every list
    was exhausted first) or ``"no breakpoint"`` (lists of one neighbour; ``s`` is infinite).
    ``settled`` is False when the densities known so far do not decide ``s`` (:func:`solve_level` with a
    ``known`` prefix); ``s`` is then an upper bound of the true level, or ``inf``.
    """

    s: float
    filled: np.ndarray
    stopped_by: str
    settled: bool = True


def list_length(n: int, max_k: int) -> int:
    """Neighbours prefetched per query: ``min(max_k, n // 10)`` as the reference, but at least two (or ``n``)."""
    return int(min(n, max(min(max_k, n // 10), 2)))


def solve_level(dist: np.ndarray, inv_rho: np.ndarray, alpha: float, C: float, *,
                lengths: np.ndarray | None = None, known: np.ndarray | None = None,
                whole_pool: np.ndarray | bool = True) -> Level:
    """The global level ``s`` of the closed form, by one sort of all breakpoints.

    ``dist`` (M x L): each query's neighbour distances in increasing order; ``inv_rho`` (M x W, W <= L):
    ``1 / rho`` of those neighbours, known for the first ``known[i]`` columns of row ``i`` (all ``W``, or
    ``L_i``, by default); ``lengths[i]`` (default ``L``): how many of row ``i``'s neighbours exist; ``whole_pool[i]``
    (default True): whether they are the whole pool.

    Query ``i`` fills its ``K``-th neighbour when ``s`` reaches the breakpoint ``b_iK = sum_{k<=K} 1/rho_ik``
    (``K <= L_i - 1``); passing it adds ``(d_i,K+1 - d_iK) * b_iK >= 0`` to
    ``g = sum_i [d_i,K_i+1 * b_iK_i - sum_{k<=K_i} d_ik / rho_ik]``. The level is the first breakpoint at
    which ``alpha * g >= (1 - alpha) * M * C``, but no higher than the wall ``b_iL_i`` of a query whose list
    is the whole pool: there it has filled every row to capacity, and no plan has a smaller maximum. A query
    whose list is a prefix of the pool has no wall; once past its last breakpoint it keeps the rest of its
    mass on its last neighbour, as the reference does (see the module docstring). If the condition is never
    met, the level is the last breakpoint. All sums are float64 and every term added is non-negative, so the
    running sum has no cancellation.
    """
    dist = np.asarray(dist, dtype=np.float64)
    inv_rho = np.asarray(inv_rho, dtype=np.float64)
    m, n_cols = dist.shape
    width = inv_rho.shape[1]
    lengths = np.full(m, n_cols, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    known = np.minimum(lengths, width) if known is None else np.asarray(known, dtype=np.int64)
    if np.any(known < 1) or np.any(known > lengths) or np.any(lengths > n_cols) or width > n_cols:
        raise ValueError("need 1 <= known <= lengths <= the number of listed neighbours")
    b = np.cumsum(inv_rho, axis=1)
    cols = np.arange(1, width + 1)
    valid = (cols[None, :] <= known[:, None]) & (cols[None, :] <= lengths[:, None] - 1)
    gaps = np.zeros((m, width))
    upto = min(width + 1, n_cols)
    gaps[:, :upto - 1] = np.diff(dist[:, :upto], axis=1)
    values = b[valid]
    gaps *= b
    s_condition = smallest_reaching(values, gaps[valid], alpha, (1.0 - alpha) * m * C)
    rows = np.arange(m)
    complete = known >= lengths
    walled = complete & np.broadcast_to(np.asarray(whole_pool, dtype=bool), (m,))
    walls = b[rows[walled], lengths[walled] - 1]
    s_wall = float(walls.min()) if len(walls) else math.inf
    incomplete = ~complete
    frontier = float(b[rows[incomplete], known[incomplete] - 1].min()) if incomplete.any() else math.inf
    s = min(s_condition, s_wall)
    stopped_by = "condition" if s_condition <= s_wall else "wall"
    if math.isinf(s) and not incomplete.any():
        s, stopped_by = (float(values.max()), "last breakpoint") if len(values) else (math.inf, "no breakpoint")
    if not s <= frontier:
        return Level(s=s, filled=np.zeros(m, dtype=np.int64), stopped_by=stopped_by, settled=False)
    filled = (valid & (b <= s)).sum(axis=1).astype(np.int64)
    return Level(s=s, filled=filled, stopped_by=stopped_by)


def smallest_reaching(values: np.ndarray, weights: np.ndarray, alpha: float, need: float,
                      sort_below: int = 1 << 16) -> float:
    """The smallest of ``values`` at which ``alpha * (sum of the weights of the values up to it) >= need``, or
    ``inf`` if none: the first hit of the running sum over the values in increasing order (weights >= 0).

    Above ``sort_below`` values, the answer is first bracketed by halving: split at the median
    (``np.partition``) into the values below it, equal to it and above it, and keep the part that holds the
    answer (the median itself if the hit falls among its ties) with the weight below that part. At most the last
    ``sort_below`` values are sorted. Below, it is one sort and one running sum."""
    if len(values) > sort_below and not alpha * float(weights.sum()) >= need:
        return math.inf  # the condition is never met
    low_sum = 0.0
    kept_values, kept_weights = values, weights
    while len(kept_values) > sort_below:
        middle = len(kept_values) // 2
        pivot = np.partition(kept_values, middle)[middle]
        below, above = kept_values < pivot, kept_values > pivot
        mass_below = float(kept_weights[below].sum())
        if alpha * (low_sum + mass_below) >= need:
            kept_values, kept_weights = kept_values[below], kept_weights[below]
            continue
        mass_through = mass_below + float(kept_weights[~(below | above)].sum())
        if alpha * (low_sum + mass_through) >= need:
            return float(pivot)
        low_sum += mass_through
        kept_values, kept_weights = kept_values[above], kept_weights[above]
    order = np.argsort(kept_values, kind="stable")
    hits = np.flatnonzero(alpha * (low_sum + np.cumsum(kept_weights[order])) >= need)
    if len(hits):
        return float(kept_values[order[hits[0]]])
    if kept_values is values:
        return math.inf
    return smallest_reaching(values, weights, alpha, need, sort_below=len(values))  # rounding left no hit


def plan_masses(level: Level, inv_rho: np.ndarray) -> np.ndarray:
    """The transport plan on the lists: ``masses[i, k]`` is the mass query ``i`` sends to its ``k``-th
    neighbour (0-based), shape ``M x (max K_i + 1)``; each row sums to ``1 / M``."""
    m = len(level.filled)
    top = int(level.filled.max())
    inv = np.zeros((m, top))
    inv[:, :min(top, inv_rho.shape[1])] = np.asarray(inv_rho, dtype=np.float64)[:, :top]
    inside = np.arange(top)[None, :] < level.filled[:, None]
    masses = np.zeros((m, top + 1))
    masses[:, :top] = np.where(inside, inv / (m * level.s), 0.0)
    b_filled = np.where(inside, inv, 0.0).sum(axis=1)
    masses[np.arange(m), level.filled] = np.maximum(1.0 - b_filled / level.s, 0.0) / m
    return masses


def plan_objective(masses: np.ndarray, dist: np.ndarray, rho: np.ndarray, alpha: float, C: float) -> float:
    """``(alpha / C) * sum gamma d + (1 - alpha) * M * max rho gamma`` for a plan on the lists (columns of
    ``masses`` are the first columns of ``dist`` and ``rho``)."""
    width = masses.shape[1]
    m = masses.shape[0]
    d = np.asarray(dist, dtype=np.float64)[:, :width]
    r = np.asarray(rho, dtype=np.float64)[:, :width]
    transport = float(np.sum(masses * d))
    return alpha / C * transport + (1.0 - alpha) * m * float(np.max(r * masses))


def solve_lazily(dist: np.ndarray, neighbours: np.ndarray, lengths: np.ndarray, alpha: float, C: float,
                 density_of: Callable[[np.ndarray], np.ndarray], start: int,
                 whole_pool: np.ndarray | bool = False) -> tuple[Level, np.ndarray, list[int]]:
    """Solve for the level, reading densities only for growing prefixes of the neighbour lists.

    ``density_of(rows)`` returns ``rho`` of pool rows (float64) and is expected to cache them (see
    :class:`DensityOracle`). Starting from the first ``start`` neighbours of every query, a query's prefix
    grows while the known densities leave its part of the sweep undecided: its last known breakpoint lies
    below the level found so far, which is an upper bound of the true level because unknown breakpoints only
    add to ``g``. Such a prefix grows to the length :func:`_grown_prefix` guesses. Returns the level, the
    ``1 / rho`` matrix of the known prefixes (zero elsewhere) and the prefix entries read in each round.
    """
    m = neighbours.shape[0]
    known = np.minimum(lengths, max(1, int(start))).astype(np.int64)
    rounds: list[int] = []
    while True:
        width = int(known.max())
        mask = np.arange(width)[None, :] < known[:, None]
        inv_rho = np.zeros((m, width))
        inv_rho[mask] = 1.0 / density_of(neighbours[:, :width][mask])
        rounds.append(int(known.sum()))
        level = solve_level(dist, inv_rho, alpha, C, lengths=lengths, known=known, whole_pool=whole_pool)
        if level.settled:
            return level, inv_rho, rounds
        known = np.minimum(lengths, _grown_prefix(dist, inv_rho, known, lengths, level.s, alpha, C))


def _grown_prefix(dist: np.ndarray, inv_rho: np.ndarray, known: np.ndarray, lengths: np.ndarray, s: float,
                  alpha: float, C: float) -> np.ndarray:
    """Our guess of the prefix each undecided query needs (the guess sets how many densities are computed,
    never the result). A query is undecided when its prefix is shorter than its list and its last known
    breakpoint lies below ``s``, the level found on the known prefixes (an upper bound). With ``s`` finite,
    such a query grows to where its mean ``1 / rho`` so far would reach ``s``; with ``s`` infinite (the
    known prefixes never meet the condition), to its ``K_i + 2`` when the problem is solved with every
    unknown ``1 / rho`` set to that mean, over at most four times the widest prefix. Always by 8 at least."""
    b = inv_rho.sum(axis=1)
    mean = b / known
    undecided = (known < lengths) & (b < s)
    if math.isfinite(s):
        want = known + np.ceil((s - b) / mean).astype(np.int64) + 1
    else:
        width = int(min(dist.shape[1], 4 * known.max()))
        guess = np.where(np.arange(width)[None, :] < known[:, None],
                         np.pad(inv_rho, ((0, 0), (0, width - inv_rho.shape[1])))[:, :width], mean[:, None])
        want = solve_level(dist, guess, alpha, C, lengths=np.minimum(lengths, width), whole_pool=False).filled + 2
    return np.where(undecided, np.maximum(known + 8, want), known)


# -- densities ---------------------------------------------------------------------------------------------
#: an exact range search: vectors (float32) -> faiss's CSR ``(lims, squared distances, pool rows)``
RangeSearch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def pool_range_search(x: np.ndarray, radius: float, stats: dict[str, int],
                      among: np.ndarray | None = None) -> RangeSearch:
    """Exact range search (Euclidean ``radius``) of a batch of vectors over every row of the pool ``x``, or
    over the rows ``among`` only (a sorted array of row numbers).

    faiss's brute-force ``range_search_L2sqr`` run on the pool matrix in place: no index and no copy of the
    pool (only of the rows ``among``). An IVF or HNSW index built for the prefetch is no use here: their
    range searches are approximate. Distances are faiss's squared L2 in float32. ``stats["compared"]``
    counts the distances computed.
    """
    import faiss

    pool = np.ascontiguousarray(x if among is None else x[among], dtype=np.float32)
    n, dim = pool.shape
    r2 = float(radius) ** 2

    def search(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = np.ascontiguousarray(y, dtype=np.float32)
        result = faiss.RangeSearchResult(len(y))
        faiss.range_search_L2sqr(faiss.swig_ptr(y), faiss.swig_ptr(pool), dim, len(y), n, r2, result)
        lims = faiss.rev_swig_ptr(result.lims, len(y) + 1).astype(np.int64)
        hits = int(lims[-1])
        d2 = faiss.rev_swig_ptr(result.distances, hits).copy()
        ids = faiss.rev_swig_ptr(result.labels, hits).astype(np.int64)
        stats["compared"] = stats.get("compared", 0) + len(y) * n
        return lims, d2, ids if among is None else among[ids]

    return search


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
    s2 = np.float32(sigma**2)
    for lo, pos, d2, ids in _hits_per_row(rows, x, search, chunk):
        other = ids != rows[lo + pos]
        kernel = np.maximum(1.0 - d2[other] / s2, 0.0).astype(np.float64)
        rho[lo:lo + chunk] += np.bincount(pos[other], weights=kernel, minlength=min(chunk, len(rows) - lo))
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
        self.cache = np.full(x.shape[0], np.nan)
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
        missing = np.unique(rows[np.isnan(self.cache[rows])])
        if len(missing):
            t0 = time.perf_counter()
            self.cache[missing] = self._compute(missing)
            self.rows += len(missing)
            self.seconds += time.perf_counter() - t0
        return self.cache[rows]


# -- from the plan to the selection -------------------------------------------------------------------------
@dataclass(frozen=True)
class PoolProbability:
    """``probability[r]`` of pool row ``rows[r]`` (every row with non-zero mass, ascending), with the query
    that sent it the most mass, the distance between the two and the row's density."""

    rows: np.ndarray
    probability: np.ndarray
    sender: np.ndarray
    distance: np.ndarray
    density: np.ndarray


def pool_probability(masses: np.ndarray, neighbours: np.ndarray, dist: np.ndarray,
                     density: np.ndarray) -> PoolProbability:
    """Sum the plan over queries: ``p_j = sum_i gamma_ij`` (float64), keeping rows with positive mass. The
    sender of a row is the query that sent it the most mass (the first such query on ties)."""
    width = masses.shape[1]
    query, col = np.nonzero(masses > 0)
    rows = neighbours[query, col].astype(np.int64)
    mass = masses[query, col]
    span = int(rows.max()) + 1 if len(rows) else 0
    unique = np.flatnonzero(np.bincount(rows, minlength=span))
    total = np.bincount(rows, weights=mass, minlength=span)[unique]
    most = np.zeros(span)
    np.maximum.at(most, rows, mass)
    top = np.flatnonzero(mass == most[rows])
    first = np.full(span, len(mass), dtype=np.int64)
    np.minimum.at(first, rows[top], top)
    first = first[unique]
    return PoolProbability(rows=unique, probability=total, sender=query[first],
                           distance=np.asarray(dist, dtype=np.float64)[:, :width][query[first], col[first]],
                           density=np.asarray(density, dtype=np.float64)[:, :width][query[first], col[first]])


def draw_counts(probability: np.ndarray, budget: int, sampling: str, rng: np.random.Generator) -> np.ndarray:
    """Training counts per row: ``budget`` multinomial draws (the reference), or ``budget`` distinct rows
    drawn one after another with probability proportional to ``p`` among those not drawn yet (weighted
    sampling without replacement by exponential keys; our choice of scheme)."""
    p = probability / probability.sum()
    if sampling == "multinomial":
        return rng.multinomial(budget, p).astype(np.int64)
    keys = rng.exponential(size=len(p)) / p
    counts = np.zeros(len(p), dtype=np.int64)
    counts[np.argpartition(keys, budget - 1)[:budget]] = 1
    return counts


@dataclass
class InPlaceSearch:
    """Exact k-nearest-neighbour search by faiss's brute force on the pool matrix itself (``faiss.knn``): no
    index to build and no copy of the pool. Same ``search`` and ``info`` as a :class:`NeighbourIndex`."""

    x: np.ndarray

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Canonical answer: ties ordered, and cut, by increasing row (as every engine's exact search)."""
        import faiss

        from tasksift.index.sharded import exact_search

        q = np.ascontiguousarray(queries, dtype=np.float32)
        return exact_search(lambda y, depth: faiss.knn(y, self.x, depth), q, int(k), len(self.x), False)

    def info(self) -> dict[str, Any]:
        return {"kind": "flat", "metric": "l2", "rows": int(self.x.shape[0]), "dim": int(self.x.shape[1]),
                "build_seconds": 0.0, "exact": True, "in_place": True}


def prefetch(index: NeighbourIndex | InPlaceSearch, queries: np.ndarray, length: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def first_prefix(dist: np.ndarray, lengths: np.ndarray, alpha: float, C: float, most: int = 1024) -> int:
    """Where to start reading densities (our choice): ``K_i + 2`` of the sweep with density off (all
    ``rho = 1``) over the first ``most`` columns, at least 32."""
    width = min(dist.shape[1], most)
    level = solve_level(dist[:, :width], np.ones((len(dist), width)), alpha, C, lengths=np.minimum(lengths, width),
                        whole_pool=False)
    return max(32, int(level.filled.max()) + 2)


def _summary(values: np.ndarray) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"min": float(v.min()), "median": float(np.median(v)), "mean": float(v.mean()), "max": float(v.max())}


def _is_unit(x: np.ndarray, chunk: int = 65536) -> bool:
    return all(np.allclose((x[lo:lo + chunk].astype(np.float64) ** 2).sum(axis=1), 1.0, atol=1e-4)
               for lo in range(0, len(x), chunk))


def _unit_rows(x: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty_like(x)
    for lo in range(0, len(x), chunk):
        block = x[lo:lo + chunk].astype(np.float64)
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        out[lo:lo + chunk] = np.divide(block, norms, out=np.zeros_like(block), where=norms > 0)
    return out


# -- the selector -------------------------------------------------------------------------------------------
@register
class TSDSSelector(Selector):
    """TSDS (Liu, Karbasi, Rekatsinas, NeurIPS 2024): sample from the transport-optimal distribution.

    Parameters (defaults are the reference's config): ``alpha`` (0.5; towards 1 each query keeps its nearest
    candidate, towards 0 it spreads over wider, more diverse neighbourhoods), ``C`` (5.0, on the scale of the
    embedding norms), ``sigma`` (0.75, the kernel radius; 0 turns density off: KNN-Uniform), ``max_k``
    (5000) and ``kde_k`` (1000), both capped at ``N // 10`` as the reference does, ``metric`` (``l2``, the
    reference, or ``cosine``), ``density`` (``radius``, the default: exact, every pool row within ``sigma``; ``auto``:
    exact while the work is small, approximate above, see the module docstring; ``ivf``: approximate,
    a lower bound, over a two-level inverted file set by ``density_nlist``, ``density_nprobe``,
    ``density_coarse_probe`` and ``density_cell_rows`` (starting values: the probes double while
    ``density_check_rows`` rows per request, computed exactly, show a relative error above
    ``density_tolerance``, 1e-3; 0 checks nothing); ``reference``: ``kde_k`` nearest among the union of
    the prefetched lists), ``sampling``
    (``multinomial``: ``budget`` draws with replacement whose counts are the weights, the reference; or
    ``without_replacement``), ``index`` and its IVF settings ``nlist`` / ``nprobe``.

    ``index`` only concerns the prefetch of the ``max_k`` nearest neighbours (``density`` sets how densities
    are computed).
    ``"auto"`` (our choice) searches exactly, by brute force on the pool matrix in place (:class:`InPlaceSearch`:
    no index, no copy of the pool), while targets x pool rows stay below ``AUTO_EXACT_MAX`` (10^9: 500
    targets over 2,000,000 rows), because one batch of target examples is searched once and building an
    index costs more than that on a few cores; above, it is :func:`tasksift.index.build_index`'s ``auto``
    (exact up to 200,000 rows, IVF above). ``flat``, ``ivf`` and ``hnsw`` go to ``build_index`` as they are;
    IVF, whether chosen or asked for, uses the reference's settings unless given: ``nlist = int(sqrt(N)) // 2``
    cells, ``nprobe = 10``.

    Score: ``p`` of the row. Rank: by draw count, then ``p``, descending. Reason: the target row that sent it
    the most mass, their distance, the row's density and ``p``. ``selection.tables["probability"]`` holds
    ``p`` of every row with non-zero mass.
    """

    name = "tsds"
    needs = "vectors"
    summary = "transport-optimal distribution over the pool with a near-duplicate penalty (TSDS)"
    allows_budget_above_pool = True

    def __init__(self, budget: int, *, seed: int = 0, alpha: float = 0.5, C: float = 5.0, sigma: float = 0.75,
                 max_k: int = 5000, kde_k: int = 1000, metric: str = "l2", density: str = "radius",
                 sampling: str = "multinomial", index: str = "auto", nlist: int | None = None,
                 nprobe: int = 10, density_nlist: int | None = None, density_nprobe: int = 1,
                 density_coarse_probe: int = 1, density_cell_rows: int = 2048, density_tolerance: float = 1e-3,
                 density_check_rows: int = 64) -> None:
        super().__init__(budget, seed=seed)
        self.alpha = alpha
        self.C = C
        self.sigma = sigma
        self.max_k = max_k
        self.kde_k = kde_k
        self.metric = metric
        self.density = density
        self.sampling = sampling
        self.index = index
        self.nlist = nlist
        self.nprobe = nprobe
        self.density_nlist = density_nlist
        self.density_nprobe = density_nprobe
        self.density_coarse_probe = density_coarse_probe
        self.density_cell_rows = density_cell_rows
        self.density_tolerance = density_tolerance
        self.density_check_rows = density_check_rows

    def _check_params(self) -> None:
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise InputError(f"alpha={self.alpha} is outside [0, 1]")
        if not float(self.C) > 0:
            raise InputError(f"C={self.C} must be positive", fix="use a value on the scale of the embedding norms")
        if not float(self.sigma) >= 0:
            raise InputError(f"sigma={self.sigma} must be 0 (no density) or positive")
        if not float(self.density_tolerance) >= 0:
            raise InputError(f"density_tolerance={self.density_tolerance} must be 0 (no check) or positive")
        for name in ("max_k", "kde_k", "nprobe", "density_nprobe", "density_coarse_probe", "density_cell_rows",
                     "density_check_rows"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name}={getattr(self, name)} must be at least 1")
        if self.nlist is not None and int(self.nlist) < 1:
            raise InputError(f"nlist={self.nlist} must be at least 1", fix="or leave it unset for sqrt(N) / 2")
        if self.density_nlist is not None and int(self.density_nlist) < 1:
            raise InputError(f"density_nlist={self.density_nlist} must be at least 1",
                             fix="or leave it unset for sqrt(N) / 32")
        for name, allowed in (("metric", TSDS_METRICS), ("density", DENSITY_RULES),
                              ("sampling", SAMPLING_RULES), ("index", INDEX_KINDS)):
            if getattr(self, name) not in allowed:
                raise InputError(f"{name}={getattr(self, name)!r} is not supported",
                                 fix=f"choose one of: {', '.join(allowed)}")

    def _select(self, pool: Any, target: Any) -> Selection:
        self._check_params()
        stages: dict[str, float] = {}
        t0 = time.perf_counter()
        x = as_float_matrix(pool, "pool vectors")
        q = as_float_matrix(target, "target vectors")
        if x.shape[1] != q.shape[1]:
            raise InputError(f"pool vectors have {x.shape[1]} dimensions and target vectors {q.shape[1]}",
                             fix="embed both with the same model")
        if self.metric == "cosine":
            x = x if _is_unit(x) else _unit_rows(x)
            q = _unit_rows(q)
        n, m = x.shape[0], q.shape[0]
        stages["prepare"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        remote = getattr(self, "search_backend", None)  # the engine's sharded search, or None: in process
        if self.index == "auto" and m * n <= AUTO_EXACT_MAX:
            index: Any = InPlaceSearch(x) if remote is None else remote.exact(x)
        else:
            nlist = int(self.nlist) if self.nlist else max(1, math.isqrt(n) // 2)
            index = (build_index if remote is None else remote.build)(
                x, metric="l2", kind=self.index, nlist=nlist, nprobe=int(self.nprobe), seed=self.seed)
        stages["index"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        length = list_length(n, int(self.max_k))
        dist, neighbours, lengths = prefetch(index, q, length)
        stages["search"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        search_stats: dict[str, int] = {}
        oracle = self._density_oracle(x, neighbours, search_stats)
        prepare_density = time.perf_counter() - t0

        t0 = time.perf_counter()
        alpha, C = float(self.alpha), float(self.C)
        whole_pool = lengths >= n
        if oracle.search is None:
            inv_rho = np.ones(dist.shape)
            level = solve_level(dist, inv_rho, alpha, C, lengths=lengths, whole_pool=whole_pool)
            rounds = [int(lengths.sum())]
        else:
            start = first_prefix(dist, lengths, alpha, C)
            level, inv_rho, rounds = solve_lazily(dist, neighbours, lengths, alpha, C, oracle, start, whole_pool)
        masses = plan_masses(level, inv_rho)
        width = masses.shape[1]
        sent = masses > 0
        rho = np.ones(masses.shape)
        rho[sent] = oracle(neighbours[:, :width][sent])
        probability = pool_probability(masses, neighbours, dist, rho)
        solve_seconds = time.perf_counter() - t0
        stages["density"] = prepare_density + oracle.seconds
        stages["solver"] = solve_seconds - oracle.seconds

        t0 = time.perf_counter()
        selection = self._sample(probability)
        stages["sampling"] = time.perf_counter() - t0

        self.level_, self.masses_, self.probability_ = level, masses, probability
        self.neighbours_, self.distances_, self.densities_ = neighbours[:, :width], dist[:, :width], rho
        self.density_rows_ = np.flatnonzero(~np.isnan(oracle.cache))
        self.density_values_ = oracle.cache[self.density_rows_]
        density_info: dict[str, Any] = {"rule": self.density if oracle.search is not None else "off"}
        if oracle.search is not None:
            density_info.update({
                "sigma": float(self.sigma), "rows_computed": oracle.rows, "rounds": len(rounds),
                "prefix_entries": rounds, "listed_entries": int(lengths.sum()),
                "compared_distances": int(search_stats.get("compared", 0)),
            })
            if oracle.kde_k is not None:
                density_info["kde_k"] = oracle.kde_k
            if oracle.approximate is not None:
                density_info.update({
                    "exact_rows_allowed": oracle.exact_rows, "rows_exact": oracle.rows_exact,
                    "rows_approximate": oracle.rows - oracle.rows_exact,
                    "approximate": self.density_index_.info() if self.density_index_ is not None else None,
                    "check": self.density_check_.info() if self.density_index_ is not None else None,
                })
        selection.manifest.update({
            "index": {**index.info(), "list_length": length},
            "stages": {k: round(v, 4) for k, v in stages.items()},
            "solver": {
                "s": level.s if math.isfinite(level.s) else None, "stopped_by": level.stopped_by,
                "K": _summary(level.filled),
                "capped_queries": int((level.filled >= lengths - 1).sum()), "support": len(probability.rows),
                "queries": m, "pool": n,
            },
            "density": density_info,
        })
        return selection

    def _density_oracle(self, x: np.ndarray, neighbours: np.ndarray, stats: dict[str, int]) -> DensityOracle:
        sigma = float(self.sigma)
        self.density_index_: TwoLevelIVF | None = None
        if sigma == 0:
            return DensityOracle(x, 0.0, None)
        if self.density == "radius":
            return DensityOracle(x, sigma, self._exact_range_search(x, sigma, stats))
        if self.density in ("auto", "ivf"):
            exact_rows = 0 if self.density == "ivf" else AUTO_EXACT_MAX // x.shape[0]
            search = self._exact_range_search(x, sigma, stats)
            return DensityOracle(x, sigma, search, exact_rows=exact_rows, approximate=lambda: self._approximate_density(
                x, sigma, lambda rows: radius_density(search, x, rows, sigma)))
        union = np.unique(neighbours)
        return DensityOracle(x, sigma, pool_range_search(x, sigma, stats, among=union),
                             kde_k=max(1, min(int(self.kde_k), x.shape[0] // 10)))

    def _exact_range_search(self, x: np.ndarray, sigma: float, stats: dict[str, int]) -> RangeSearch:
        """The exact range search of the densities: on the engine's shards when one is given (Ray; the hits come
        back in the same order, so the sums are the same), else in process."""
        remote = getattr(self, "search_backend", None)
        return (pool_range_search if remote is None else remote.range_search)(x, sigma, stats)

    def _approximate_density(self, x: np.ndarray, sigma: float, exact: DensityFunction) -> DensityFunction:
        """The density of ``density="ivf"``: ``1 +`` the kernel sums over the rows a :class:`TwoLevelIVF` over the
        pool (kept as ``density_index_``) finds near each row, the row itself excluded, its probe count widened
        until rows checked against ``exact`` are within ``density_tolerance`` (:class:`CheckedDensity`, kept as
        ``density_check_``)."""
        n = x.shape[0]
        cells = int(self.density_nlist) if self.density_nlist else max(1, math.isqrt(n) // 32)
        self.density_index_ = ivf = TwoLevelIVF(x, coarse_cells=cells, cell_rows=int(self.density_cell_rows),
                                                nprobe=int(self.density_nprobe),
                                                coarse_probe=int(self.density_coarse_probe), seed=self.seed)
        self.density_check_ = CheckedDensity(ivf, exact, float(sigma) ** 2, tolerance=float(self.density_tolerance),
                                             check_rows=int(self.density_check_rows), seed=self.seed,
                                             check=lambda rows: brute_density(x, rows, sigma))
        return self.density_check_

    def _sample(self, prob: PoolProbability) -> Selection:
        budget = int(self.budget)
        if self.sampling == "without_replacement" and budget > len(prob.rows):
            raise InputError(f"budget {budget} is larger than the {len(prob.rows)} candidates with non-zero "
                             "probability", fix="use sampling=multinomial, a smaller alpha or a larger max_k")
        counts = draw_counts(prob.probability, budget, self.sampling, np.random.default_rng(self.seed))
        chosen = np.flatnonzero(counts)
        order = chosen[np.lexsort((prob.rows[chosen], -prob.probability[chosen], -counts[chosen]))]
        reasons = [{"target": int(prob.sender[r]), "distance": float(prob.distance[r]),
                    "density": float(prob.density[r]), "probability": float(prob.probability[r])}
                   for r in order.tolist()]
        selection = Selection(indices=prob.rows[order], weights=counts[order].astype(np.float64),
                              scores=prob.probability[order], reasons=reasons)
        selection.tables["probability"] = pa.table({
            "row": pa.array(prob.rows, type=pa.int64()),
            "probability": pa.array(prob.probability, type=pa.float64()),
        })
        return selection
