"""The closed form of TSDS: the global level ``s`` of the transport plan, and the plan it gives.

The plan sends each query's mass ``1 / M`` to its neighbours in increasing distance, filling each up to the
capacity ``1 / (M s rho)`` set by the level ``s`` (docs/methods.md, "TSDS"). :func:`solve_level` finds ``s`` by
one sort of all breakpoints; :func:`solve_lazily` does so reading densities only for growing prefixes of the
neighbour lists (the closed form only reads those of each query's first ``K_i + 1`` neighbours);
:func:`plan_masses` and :func:`plan_objective` give the plan and its cost.

Choices the paper and the reference code leave open, made here:

- A query that passes every breakpoint of its list (``K_i = L - 1``) is "capped". When its list is the
  whole pool, the level stops at its "wall", where it has filled every row to capacity: that is the optimum
  (tested against an LP solver). When its list is only the nearest ``L`` rows, the full problem would have
  it spread further, beyond what was prefetched; we then do what the reference does: the level runs on and
  the query keeps the rest of its mass on its last listed neighbour. Stopping at the wall there would be
  the optimum of the truncated problem, but one query whose list is all near-duplicates would then freeze
  every other query at its nearest neighbour. The selector's ``manifest["solver"]["capped_queries"]`` counts
  capped queries (raise ``max_k`` when there are many).
- A query whose sweep stops before its first breakpoint (``K_i = 0``) sends its whole mass to its nearest
  neighbour, which the closed form allows; the reference would count that neighbour as filled and fail its
  own assertion.
- Below 20 pool rows, where ``N // 10`` would leave fewer than two neighbours per query, lists hold two
  (the reference stops there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Level:
    """Where the sweep over the global level ``s`` stopped.

    ``filled[i]`` is ``K_i``: query ``i`` gives each of its first ``K_i`` neighbours ``1 / (M s rho)`` and the
    rest of its ``1 / M`` to neighbour ``K_i + 1``. ``stopped_by`` is ``"condition"`` (the optimality
    condition of docs/methods.md), ``"wall"`` (a query filled the whole pool), ``"last breakpoint"`` (every list
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



def first_prefix(dist: np.ndarray, lengths: np.ndarray, alpha: float, C: float, most: int = 1024) -> int:
    """Where to start reading densities (our choice): ``K_i + 2`` of the sweep with density off (all
    ``rho = 1``) over the first ``most`` columns, at least 32."""
    width = min(dist.shape[1], most)
    level = solve_level(dist[:, :width], np.ones((len(dist), width)), alpha, C, lengths=np.minimum(lengths, width),
                        whole_pool=False)
    return max(32, int(level.filled.max()) + 2)
