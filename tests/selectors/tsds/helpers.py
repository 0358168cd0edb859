"""Brute-force counterparts and test data shared by the TSDS tests."""

from __future__ import annotations

import heapq

import numpy as np

from tasksift.selectors.tsds.selector import TSDSSelector


def all_densities(x: np.ndarray, sigma: float) -> np.ndarray:
    """rho of every row from the full float64 distance matrix (the row itself adds exactly 1)."""
    d2 = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, 0.0)
    return np.maximum(1.0 - d2 / sigma**2, 0.0).sum(axis=1)


def sorted_lists(x: np.ndarray, q: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((q[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1))
    order = np.argsort(d, axis=1, kind="stable")[:, :length]
    return np.take_along_axis(d, order, 1), order


def heap_sweep(dist: np.ndarray, rho: np.ndarray, alpha: float, C: float) -> tuple[float, np.ndarray]:
    """The sweep of docs/methods.md one breakpoint at a time (lists are prefixes of the pool: no walls)."""
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


def probability_on(selector: TSDSSelector, rows: np.ndarray) -> float:
    """Total probability a fitted selector puts on ``rows``."""
    p = dict(zip(selector.probability_.rows.tolist(), selector.probability_.probability.tolist(), strict=True))
    return sum(p.get(int(r), 0.0) for r in rows)
