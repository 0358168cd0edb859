"""Exact range search that skips most of the pool: the pool rows within a radius that the brute force finds.

Two lower bounds on the distance decide which pairs get their distance computed. Both are exact (a pair the
brute force finds within the radius is never skipped), so the hits are those of
:func:`tasksift.index.exact.pool_range_search`, in the same order (increasing row per query), their distances
computed by the same faiss function in float32.

- Projection: ``z = V^T (x - mu)``, with ``V`` the ``dims`` leading principal directions of the pool
  (orthonormal columns), so ``||z_q - z_x|| <= ||q - x||`` (Pythagoras). A faiss range search over the
  projected pool (``dims`` numbers per row instead of ``d``) keeps the pairs within the radius in projection;
  the others are farther apart in full.
- Cells: k-means on the projected pool, ``cells`` cells (default ``sqrt(N)``, as an inverted file's lists),
  each with its radius (the largest projected distance of a member from its centroid). A block of queries
  skips a cell whose centroid is farther from each of its queries than the search radius plus the cell's
  radius (triangle inequality).
- The pairs kept get their distance from faiss's brute force, block by block: the queries, sorted by their
  nearest cell (neighbours share candidates), against the union of their candidates only.

Rounding: the bounds are computed in float32, so each comparison is widened by a worst-case bound of the
float32 rounding in the projection, in the projected distances and in faiss's own distances
(:meth:`PrunedRangeSearch.reach`): rounding never skips a pair the brute force would find.

What is skipped depends on the data. In high dimensions a cell's radius is large next to the distances between
cells, so cells skip little unless clusters are tight and far apart; the projection skips the pairs that differ
along the pool's leading directions, as rows of different topics do. ``dims`` is chosen on a sample: the
candidates ``PROJECTION_DIMS`` are tried on ``SAMPLE_QUERIES`` of the first queries against ``SAMPLE_ROWS`` pool
rows, and the one with the smallest estimated cost is kept, with ``dims = 0`` (the brute force, every pair in
full) when none would save ``1 - BRUTE_SHARE`` of it. ``stats`` counts the work: ``compared`` (distances in
full), ``projected`` (distances in projection), ``brute_force`` (what the brute force computes), ``cells``,
``cell_visits`` (query x cell pairs not skipped) and ``dims``.
"""

from __future__ import annotations

import math
import time

import numpy as np

from tasksift.index.exact import range_search_l2
from tasksift.index.two_level import grouped, kmeans_centroids, nearest_centroid, squared_distances

#: projection widths tried (those below the vectors' width)
PROJECTION_DIMS = (32, 64, 128)
#: pool rows sampled for the principal directions and the choice of ``dims``
SAMPLE_ROWS = 16384
#: queries sampled (from the first call) for the choice of ``dims``
SAMPLE_QUERIES = 256
#: faiss's range scan costs, per pair, about as much beyond the product as a product over this many numbers
#: (measured on one core: 2.0 ns per pair over 64 numbers, 6.1 ns over 384)
SCAN_OVERHEAD_DIMS = 96
#: a kept pair costs about this many full distances: a block's candidates are the union of its queries'
UNION_FACTOR = 2.0
#: the projection is used when its estimated cost is below this share of the brute force
BRUTE_SHARE = 0.75
#: queries per block: one projected scan and one exact search on the union of the block's candidates
BLOCK_ROWS = 128
#: when the cells kept hold more than this share of the pool, the whole projected pool is scanned (no copy)
SCAN_ALL_SHARE = 0.5
#: the unit roundoff of float32
UNIT = 2.0**-24


def _gamma(n: int) -> float:
    """The worst-case relative error of a float32 sum of ``n`` products."""
    return n * UNIT / (1 - n * UNIT)


def _max_sq_norm(a: np.ndarray) -> float:
    return float(np.einsum("ij,ij->i", a, a, dtype=np.float64).max()) if len(a) else 0.0


class PrunedRangeSearch:
    """Exact range search (Euclidean ``radius``) of batches of vectors over the pool ``x``: a
    :data:`tasksift.index.exact.RangeSearch`. The projection and the cells are built at the first call, whose
    queries are the sample that chooses ``dims`` (given ``dims``: that width, 0 for the brute force; given
    ``cells``: that many cells)."""

    def __init__(self, x: np.ndarray, radius: float, stats: dict[str, int], *, dims: int | None = None,
                 cells: int | None = None, seed: int = 0, block: int = BLOCK_ROWS) -> None:
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.radius2 = float(radius) ** 2
        self.stats = stats
        self.dims, self.cells, self.seed, self.block = dims, cells, int(seed), int(block)
        self.basis: np.ndarray | None = None
        self.built = False

    # -- build ------------------------------------------------------------------------------------------------
    def _build(self, queries: np.ndarray) -> None:
        t0 = time.perf_counter()
        n, d = self.x.shape
        rng = np.random.default_rng([self.seed, 17])
        sample = self.x if n <= SAMPLE_ROWS else self.x[np.sort(rng.choice(n, SAMPLE_ROWS, replace=False))]
        self.mean = sample.mean(axis=0, dtype=np.float64).astype(np.float32)
        centred = sample - self.mean
        _, vectors = np.linalg.eigh((centred.T @ centred).astype(np.float64))
        vectors = vectors[:, ::-1]  # leading directions first
        dims = self.dims if self.dims is not None else self._choose_dims(vectors, centred, queries, rng)
        for key in ("brute_force", "projected", "cells", "cell_visits", "compared", "build_ms"):
            self.stats.setdefault(key, 0)
        self.stats["dims"] = int(dims) if 0 < dims < d else 0
        self.built = True
        if self.stats["dims"]:
            self._project(vectors[:, :dims])
        self.stats["build_ms"] += round(1000 * (time.perf_counter() - t0))

    def _project(self, basis: np.ndarray) -> None:
        """The projected pool, grouped by cell, and the cells with their radii."""
        n, dims = len(self.x), basis.shape[1]
        self.basis = np.ascontiguousarray(basis, dtype=np.float32)
        self.basis_norm = float(np.linalg.norm(self.basis.astype(np.float64), 2)) * (1 + 1e-9)
        z = np.empty((n, dims), dtype=np.float32)
        self.pool_sq, self.pool_centred_sq = 0.0, 0.0
        for lo in range(0, n, 65536):
            part = self.x[lo:lo + 65536]
            self.pool_sq = max(self.pool_sq, _max_sq_norm(part))
            part = part - self.mean
            self.pool_centred_sq = max(self.pool_centred_sq, _max_sq_norm(part))
            z[lo:lo + len(part)] = part @ self.basis
        count = self.cells if self.cells is not None else max(1, math.isqrt(n))
        self.centroids = kmeans_centroids(z, min(int(count), n), self.seed)
        labels = nearest_centroid(z, self.centroids)
        self.rows, self.starts = grouped(labels, len(self.centroids))
        self.z = np.ascontiguousarray(z[self.rows])  # projected pool, grouped by cell
        del z
        cell = labels[self.rows]
        spread = self.z - self.centroids[cell]
        self.cell_radius = np.zeros(len(self.centroids))
        np.maximum.at(self.cell_radius, cell, np.sqrt(np.einsum("ij,ij->i", spread, spread, dtype=np.float64)))
        self.cell_radius *= 1 + _gamma(dims + 3)
        self.z_sq = max(_max_sq_norm(self.z), _max_sq_norm(self.centroids))
        self.norms = np.concatenate([np.einsum("ij,ij->i", self.x[lo:lo + 65536], self.x[lo:lo + 65536])
                                     for lo in range(0, n, 65536)])
        self.stats["cells"] = len(self.centroids)

    def _choose_dims(self, vectors: np.ndarray, centred: np.ndarray, queries: np.ndarray,
                     rng: np.random.Generator) -> int:
        """The width of the smallest estimated cost: per pair, a projected scan (``dims`` numbers plus the scan's
        overhead) plus ``UNION_FACTOR`` full distances per pair kept, against the brute force's one full
        distance; 0 (the brute force) when no width costs less than ``BRUTE_SHARE`` of it."""
        d = self.x.shape[1]
        widths = [k for k in PROJECTION_DIMS if k < d]
        if not widths:
            return 0
        basis = np.ascontiguousarray(vectors[:, :max(widths)], dtype=np.float32)
        pick = queries if len(queries) <= SAMPLE_QUERIES else queries[
            np.sort(rng.choice(len(queries), SAMPLE_QUERIES, replace=False))]
        zq, zs = (pick - self.mean) @ basis, centred @ basis
        best, best_cost = 0, BRUTE_SHARE
        for k in widths:
            kept = float((squared_distances(zq[:, :k], zs[:, :k]) <= self.radius2).mean())
            cost = (k + SCAN_OVERHEAD_DIMS) / (d + SCAN_OVERHEAD_DIMS) + UNION_FACTOR * kept
            if cost < best_cost:
                best, best_cost = k, cost
        return best

    # -- search ---------------------------------------------------------------------------------------------
    def reach(self, y: np.ndarray, zq: np.ndarray) -> tuple[float, float]:
        """``(R, E)``: a pair the brute force finds (faiss's float32 ``d2 < radius^2``) has its computed projected
        vectors within ``R`` of each other; ``E`` bounds the float32 error of a computed squared distance between
        projected vectors (or a centroid). Worst-case bounds: ``E_f`` on faiss's distance, ``E_z`` on each
        projected vector, and the basis's norm ``||V|| >= 1 - ...`` as computed."""
        d, k = self.x.shape[1], self.basis.shape[1]
        full = 2 * _gamma(d + 2) * (_max_sq_norm(y) + self.pool_sq)
        centred = math.sqrt(max(self.pool_centred_sq, _max_sq_norm(y - self.mean)))
        each = (_gamma(d) * math.sqrt(k) + 2 * UNIT) * centred
        reach = self.basis_norm * math.sqrt(self.radius2 + full) + 2 * each
        error = 2 * _gamma(k + 2) * (_max_sq_norm(zq) + self.z_sq)
        return reach, error

    def __call__(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = np.ascontiguousarray(y, dtype=np.float32)
        if len(y) == 0:
            return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        if not self.built:
            self._build(y)
        self.stats["brute_force"] += len(y) * len(self.x)
        if self.basis is None:
            self.stats["compared"] += len(y) * len(self.x)
            return range_search_l2(y, self.x, self.radius2)
        zq = (y - self.mean) @ self.basis
        reach, error = self.reach(y, zq)
        order = np.argsort(nearest_centroid(zq, self.centroids), kind="stable")
        blocks = [(lo, min(lo + self.block, len(y))) for lo in range(0, len(y), self.block)]
        unions = self._candidates(np.ascontiguousarray(zq[order]), blocks, reach, error)
        y_norms = np.einsum("ij,ij->i", y, y)
        counts = np.zeros(len(y), dtype=np.int64)
        d2_parts, id_parts = [], []
        for (lo, hi), union in zip(blocks, unions, strict=True):
            block = order[lo:hi]
            if len(union) == 0:
                continue
            d2 = y[block] @ np.ascontiguousarray(self.x[union]).T
            d2 *= -2.0
            d2 += np.add.outer(y_norms[block], self.norms[union])  # (|y|^2 + |x|^2) - 2 y.x, as faiss rounds it
            np.maximum(d2, 0.0, out=d2)
            self.stats["compared"] += d2.size
            i, j = np.nonzero(d2 < np.float32(self.radius2))
            counts[block] = np.bincount(i, minlength=len(block))
            d2_parts.append(d2[i, j])
            id_parts.append(union[j])
        return _in_query_order(order, counts, d2_parts, id_parts)

    def _kept_cells(self, zq: np.ndarray, reach: float, error: float) -> np.ndarray | None:
        """Positions in ``self.z`` of the cells some query of ``zq`` may reach; None when they hold more than
        ``SCAN_ALL_SHARE`` of the pool (the whole pool is scanned)."""
        gap = squared_distances(zq, self.centroids) - error
        keep = (gap <= (reach + self.cell_radius[None, :]) ** 2).any(axis=0)
        self.stats["cell_visits"] += len(zq) * int(keep.sum())
        sizes = np.diff(self.starts)
        if sizes[keep].sum() > SCAN_ALL_SHARE * len(self.z):
            return None
        cells = np.flatnonzero(keep)
        return np.repeat(self.starts[cells] - np.cumsum(sizes[cells]) + sizes[cells], sizes[cells]) + np.arange(
            int(sizes[cells].sum()))

    def _candidates(self, zq: np.ndarray, blocks: list[tuple[int, int]], reach: float, error: float
                    ) -> list[np.ndarray]:
        """For each block of (sorted) queries, the pool rows (ascending) that some query of it may find: in a
        cell not skipped and within ``reach`` in projection. Consecutive blocks that scan the whole pool share
        one faiss call (faiss scans a few thousand queries at once several times faster than a few hundred)."""
        threshold = reach * reach * (1 + 4 * UNIT) + error  # faiss keeps the projected d2 below it
        kept = [self._kept_cells(zq[lo:hi], reach, error) for lo, hi in blocks]
        unions: list[np.ndarray] = []
        b = 0
        while b < len(blocks):
            if kept[b] is not None:
                lo, hi = blocks[b]
                pool = np.ascontiguousarray(self.z[kept[b]])
                _, _, idx = range_search_l2(zq[lo:hi], pool, threshold) if len(pool) else (None, None, [])
                self.stats["projected"] += (hi - lo) * len(pool)
                unions.append(np.unique(self.rows[kept[b][idx]]))
                b += 1
                continue
            last = b
            while last + 1 < len(blocks) and kept[last + 1] is None:
                last += 1
            first_row = blocks[b][0]
            lims, _, idx = range_search_l2(zq[first_row:blocks[last][1]], self.z, threshold)
            self.stats["projected"] += (blocks[last][1] - first_row) * len(self.z)
            for lo, hi in blocks[b:last + 1]:
                unions.append(np.unique(self.rows[idx[lims[lo - first_row]:lims[hi - first_row]]]))
            b = last + 1
        return unions


def _in_query_order(order: np.ndarray, counts: np.ndarray, d2_parts: list[np.ndarray],
                    id_parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """faiss's CSR ``(lims, d2, ids)`` in query order from hits listed query by query in the order ``order``."""
    d2 = np.concatenate(d2_parts) if d2_parts else np.zeros(0, dtype=np.float32)
    ids = np.concatenate(id_parts) if id_parts else np.zeros(0, dtype=np.int64)
    start_sorted = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(counts[order], out=start_sorted[1:])
    start = np.empty(len(order), dtype=np.int64)
    start[order] = start_sorted[:-1]
    lims = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(counts, out=lims[1:])
    take = np.repeat(start - lims[:-1], counts) + np.arange(lims[-1])
    return lims, d2[take], ids[take]
