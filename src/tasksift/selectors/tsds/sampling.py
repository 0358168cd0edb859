"""From the transport plan to the selection: the pool probability ``p_j = sum_i gamma_ij`` and ``budget`` draws."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tasksift.selection import Selection
from tasksift.util.errors import InputError


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
    # indexed by position among the distinct rows, not by pool row: the work and memory follow the plan's size
    unique, at = np.unique(rows, return_inverse=True)
    total = np.bincount(at, weights=mass, minlength=len(unique))
    most = np.zeros(len(unique))
    np.maximum.at(most, at, mass)
    top = np.flatnonzero(mass == most[at])
    first = np.full(len(unique), len(mass), dtype=np.int64)
    np.minimum.at(first, at[top], top)
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


def sample_selection(prob: PoolProbability, budget: int, sampling: str, seed: int) -> Selection:
    """The selection of ``budget`` draws from ``prob`` (:func:`draw_counts`, seeded by ``seed``).

    Score: ``p`` of the row. Rank: by draw count, then ``p``, descending, then row. Reason: the target row that
    sent it the most mass, their distance, the row's density and ``p``. ``selection.tables["probability"]``
    holds ``p`` of every row with non-zero mass."""
    if sampling == "without_replacement" and budget > len(prob.rows):
        raise InputError(f"budget {budget} is larger than the {len(prob.rows)} candidates with non-zero "
                         "probability", fix="use sampling=multinomial, a smaller alpha or a larger max_k")
    counts = draw_counts(prob.probability, budget, sampling, np.random.default_rng(seed))
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
