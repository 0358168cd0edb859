"""Approximate range search around pool rows: a two-level inverted file whose fine level is built on demand.

Made for many range searches that stay in a small part of a large pool (TSDS's densities of the rows near a
task's target examples), where a one-level inverted file fine enough to prune well would cost more to fill
(``N x nlist`` distances) than the searches it saves.

- Coarse level: ``coarse_cells`` k-means centroids trained on a sample of the pool; every pool row goes to its
  nearest centroid. This is the one pass over the whole pool (``N x coarse_cells`` distances).
- Fine level: built only inside the coarse cells that some search reaches, the first time one does. The cell's
  rows are split by k-means (trained on a sample of them) into cells of about ``cell_rows`` rows.
- A search vector ranks the fine cells of its ``coarse_probe`` nearest coarse cells by their centroid's distance,
  visits the ``nprobe`` nearest and computes the exact (float32) squared distance to each of their rows: the
  vectors are grouped by visited cell, and each cell's rows, gathered once, meet them in one matrix product per
  block of vectors. :meth:`TwoLevelIVF.range_search` returns the hits; :meth:`TwoLevelIVF.kernel_sums` sums a
  kernel over them as they are computed, so its memory stays one distance block.
- Assignment to centroids is a float32 matrix product and an argmin in numpy (block by block); k-means training
  (faiss, small samples) runs on one thread.

Every hit is a pool row within the radius, at its exact distance, and the visited rows are a subset of the pool,
so the hits are a subset of the exact range search's: a sum of non-negative kernel values over them is a lower
bound of the exact sum. With every cell probed (``coarse_probe >= coarse_cells`` and ``nprobe`` at least the
number of fine cells) the hits are the exact ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasksift.util.errors import InputError

#: k-means training rows per centroid (a sample of the rows being split)
TRAIN_ROWS_PER_CENTROID = 32
#: k-means iterations, both levels
KMEANS_ITERATIONS = 10
#: rows per matrix product when assigning rows to centroids
ASSIGN_BLOCK_ROWS = 16384
#: search vectors per matrix product against one fine cell (bounds the distance block's memory)
SEARCH_BLOCK_ROWS = 2048


@dataclass(frozen=True)
class FineCells:
    """The fine level inside one coarse cell: ``centroids`` (f x d), the cell's pool rows grouped by fine cell
    (``rows[starts[k]:starts[k + 1]]`` is fine cell ``k``, ascending within it), their squared norms
    (float32, same order) and the global number of its fine cell 0."""

    centroids: np.ndarray
    rows: np.ndarray
    norms: np.ndarray
    starts: np.ndarray
    first: int


def kmeans_centroids(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` centroids of the rows ``x`` (float32): faiss k-means on a sample of ``TRAIN_ROWS_PER_CENTROID * k``
    rows, on one thread (the samples are small: on busy cores, threads lose more to waiting than they gain).
    With ``k`` at least the number of rows, the rows themselves."""
    import faiss

    n, _ = x.shape
    if k >= n:
        return np.ascontiguousarray(x, dtype=np.float32)
    if k == 1:
        return x.mean(axis=0, dtype=np.float64, keepdims=True).astype(np.float32)
    rng = np.random.default_rng(seed)
    take = min(n, TRAIN_ROWS_PER_CENTROID * k)
    sample = np.ascontiguousarray(x if take == n else x[np.sort(rng.choice(n, take, replace=False))],
                                  dtype=np.float32)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # on samples this small, threads lose more to waiting than they gain
    try:
        kmeans = faiss.Kmeans(sample.shape[1], k, niter=KMEANS_ITERATIONS, seed=int(seed) % (2**31), verbose=False,
                              min_points_per_centroid=1, max_points_per_centroid=TRAIN_ROWS_PER_CENTROID)
        kmeans.train(sample)
    finally:
        faiss.omp_set_num_threads(threads)
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def nearest_centroid(x: np.ndarray, centroids: np.ndarray, block: int = ASSIGN_BLOCK_ROWS) -> np.ndarray:
    """The nearest centroid of every row: ``argmin_c ||c||^2 - 2 x.c`` by one float32 matrix product per block of
    ``block`` rows (no copy of ``x``). On a few busy cores this is several times faster than ``faiss.knn``
    with ``k = 1``, whose OpenMP threads wait on each other."""
    if len(centroids) == 1:
        return np.zeros(len(x), dtype=np.int64)
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    half_norms = 0.5 * (centroids * centroids).sum(axis=1)
    labels = np.empty(len(x), dtype=np.int64)
    for lo in range(0, len(x), block):
        scores = np.asarray(x[lo:lo + block], dtype=np.float32) @ centroids.T
        np.subtract(half_norms[None, :], scores, out=scores)
        labels[lo:lo + block] = scores.argmin(axis=1)
    return labels


def grouped(labels: np.ndarray, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions grouped by label (stable) and the offsets of each label's group."""
    small = np.int16 if cells <= np.iinfo(np.int16).max else np.int64  # a radix sort for 16-bit labels
    order = np.argsort(labels.astype(small), kind="stable")
    starts = np.zeros(cells + 1, dtype=np.int64)
    np.cumsum(np.bincount(labels, minlength=cells), out=starts[1:])
    return order, starts


def squared_distances(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``||y_i - x_j||^2`` in float32 by one matrix product, clipped at 0."""
    d2 = (y * y).sum(axis=1)[:, None] + (x * x).sum(axis=1)[None, :]
    d2 -= 2.0 * (y @ x.T)
    return np.maximum(d2, 0.0, out=d2)


class TwoLevelIVF:
    """Range search over the rows of ``x`` (float32, used in place) by the two-level inverted file of the module
    docstring. ``stats``: distances computed to fill the coarse level (``assigned``), to build fine levels
    (``fine_assigned``) and in searches (``centroid_distances``, ``compared``), and the seconds each part took."""

    def __init__(self, x: np.ndarray, *, coarse_cells: int, cell_rows: int = 256, nprobe: int = 16,
                 coarse_probe: int = 2, seed: int = 0) -> None:
        for name, value in (("coarse_cells", coarse_cells), ("cell_rows", cell_rows), ("nprobe", nprobe),
                            ("coarse_probe", coarse_probe)):
            if int(value) < 1:
                raise InputError(f"{name}={value} must be at least 1")
        if x.ndim != 2 or len(x) == 0:
            raise InputError(f"cannot index vectors of shape {x.shape}: need a non-empty rows x dimensions matrix")
        self.x = x
        self.cell_rows, self.nprobe, self.seed = int(cell_rows), int(nprobe), int(seed)
        t0 = time.perf_counter()
        self.coarse = kmeans_centroids(x, min(int(coarse_cells), len(x)), self.seed)
        self.coarse_probe = min(int(coarse_probe), len(self.coarse))
        self.order, self.starts = grouped(nearest_centroid(x, self.coarse), len(self.coarse))
        self.fine: dict[int, FineCells] = {}
        self.owner: list[int] = []  # coarse cell of each fine cell, by global number
        self.stats: dict[str, float] = {"assigned": len(x) * len(self.coarse), "fine_assigned": 0,
                                        "centroid_distances": 0, "compared": 0,
                                        "coarse_seconds": time.perf_counter() - t0, "fine_seconds": 0.0,
                                        "search_seconds": 0.0}

    def fine_cells(self, cell: int) -> FineCells:
        """The fine level of coarse cell ``cell``, built the first time it is asked for: k-means on a sample of
        its rows, then every row assigned to its nearest fine centroid, block by block (no copy of the cell)."""
        built = self.fine.get(cell)
        if built is not None:
            return built
        t0 = time.perf_counter()
        rows = self.order[self.starts[cell]:self.starts[cell + 1]]
        k = max(1, round(len(rows) / self.cell_rows)) if len(rows) else 1
        labels = np.zeros(len(rows), dtype=np.int64)
        norms = np.zeros(len(rows), dtype=np.float32)
        if len(rows) == 0:
            centroids = self.coarse[cell:cell + 1]
        else:
            rng = np.random.default_rng(self.seed + 1 + cell)
            take = min(len(rows), TRAIN_ROWS_PER_CENTROID * k)
            sample = rows if take == len(rows) else np.sort(rng.choice(rows, take, replace=False))
            centroids = kmeans_centroids(self.x[sample], k, self.seed + 1 + cell)
            for lo in range(0, len(rows), ASSIGN_BLOCK_ROWS):
                block = np.asarray(self.x[rows[lo:lo + ASSIGN_BLOCK_ROWS]], dtype=np.float32)
                labels[lo:lo + len(block)] = nearest_centroid(block, centroids)
                norms[lo:lo + len(block)] = (block * block).sum(axis=1)
            self.stats["fine_assigned"] += len(rows) * len(centroids) if len(centroids) > 1 else 0
        order, starts = grouped(labels, len(centroids))
        built = FineCells(centroids=centroids, rows=rows[order], norms=norms[order], starts=starts,
                          first=len(self.owner))
        self.owner.extend([cell] * len(centroids))
        self.fine[cell] = built
        self.stats["fine_seconds"] += time.perf_counter() - t0
        return built

    def probes(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fine cells each vector visits: ``(vector, global fine cell)`` pairs, nearest first per vector."""
        import faiss

        if len(y) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if self.coarse_probe >= len(self.coarse):
            near = np.broadcast_to(np.arange(len(self.coarse)), (len(y), len(self.coarse)))
        else:
            _, near = faiss.knn(y, self.coarse, self.coarse_probe)
        self.stats["centroid_distances"] += len(y) * len(self.coarse)
        near = np.asarray(near)
        unique = np.unique(near).tolist()
        fines = {cell: self.fine_cells(cell) for cell in unique}
        most = max(len(fine.centroids) for fine in fines.values())
        # candidates[i, j, f]: vector i's distance to fine cell f of its j-th coarse cell (inf: no such cell)
        candidates = np.full((len(y), near.shape[1], most), np.inf, dtype=np.float32)
        numbers = np.full((len(y), near.shape[1], most), -1, dtype=np.int64)
        for cell in unique:
            vecs, probe = np.nonzero(near == cell)
            fine = fines[cell]
            count = len(fine.centroids)
            d2 = squared_distances(y[vecs], fine.centroids)
            self.stats["centroid_distances"] += d2.size
            candidates[vecs, probe, :count] = d2
            numbers[vecs, probe, :count] = np.arange(fine.first, fine.first + count)
        candidates = candidates.reshape(len(y), -1)
        numbers = numbers.reshape(len(y), -1)
        take = min(self.nprobe, candidates.shape[1])
        if take < candidates.shape[1]:
            part = np.argpartition(candidates, take - 1, axis=1)[:, :take]
            nearest = np.take_along_axis(part, np.argsort(np.take_along_axis(candidates, part, axis=1), axis=1,
                                                          kind="stable"), axis=1)
        else:
            nearest = np.argsort(candidates, axis=1, kind="stable")
        cells = np.take_along_axis(numbers, nearest, axis=1)
        who = np.broadcast_to(np.arange(len(y))[:, None], cells.shape)
        found = cells >= 0
        return who[found], cells[found]

    def _visits(self, y: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """For every fine cell some vector of ``y`` probes: ``(vectors, the cell's pool rows, their squared norms,
        squared distances (float32, vectors x rows, clipped at 0))``, the vectors in blocks of at most
        ``SEARCH_BLOCK_ROWS``: one matrix product per block, against the cell's rows gathered once."""
        who, cells = self.probes(y)
        order = np.argsort(cells, kind="stable")
        who, cells = who[order], cells[order]
        y_norms = (y * y).sum(axis=1)
        bounds = np.flatnonzero(np.diff(cells)) + 1
        for lo, hi in zip(np.concatenate([[0], bounds]).tolist(), np.concatenate([bounds, [len(cells)]]).tolist(),
                          strict=True):
            if lo == hi:
                continue
            cell = int(cells[lo])
            fine = self.fine[self.owner[cell]]
            local = cell - fine.first
            a, b = int(fine.starts[local]), int(fine.starts[local + 1])
            if a == b:
                continue
            rows, norms = fine.rows[a:b], fine.norms[a:b]
            xt = np.ascontiguousarray(self.x[rows], dtype=np.float32).T
            for start in range(lo, hi, SEARCH_BLOCK_ROWS):
                vecs = who[start:min(hi, start + SEARCH_BLOCK_ROWS)]
                d2 = y[vecs] @ xt
                d2 *= -2.0
                d2 += np.add.outer(y_norms[vecs], norms)  # (|y|^2 + |x|^2) - 2 y.x, rounded as faiss does
                np.maximum(d2, 0.0, out=d2)
                self.stats["compared"] += d2.size
                yield vecs, rows, norms, d2

    def range_search(self, y: np.ndarray, radius2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pool rows within squared distance ``radius2`` of each vector among those in its probed cells, in
        faiss's CSR layout ``(lims, squared distances, pool rows)``."""
        t0 = time.perf_counter()
        y = np.ascontiguousarray(y, dtype=np.float32)
        pos_parts, d2_parts, id_parts = [], [], []
        for vecs, rows, _, d2 in self._visits(y):
            i, j = np.nonzero(d2 < radius2)
            pos_parts.append(vecs[i])
            d2_parts.append(d2[i, j])
            id_parts.append(rows[j])
        pos = np.concatenate(pos_parts) if pos_parts else np.zeros(0, dtype=np.int64)
        d2 = np.concatenate(d2_parts) if d2_parts else np.zeros(0, dtype=np.float32)
        ids = np.concatenate(id_parts) if id_parts else np.zeros(0, dtype=np.int64)
        order = np.argsort(pos, kind="stable")
        lims = np.zeros(len(y) + 1, dtype=np.int64)
        np.cumsum(np.bincount(pos, minlength=len(y)), out=lims[1:])
        self.stats["search_seconds"] += time.perf_counter() - t0
        return lims, d2[order].astype(np.float32), ids[order].astype(np.int64)

    def kernel_sums(self, rows: np.ndarray, radius2: float) -> np.ndarray:
        """For pool rows ``rows``: the sum of ``max(0, 1 - d2 / radius2)`` (float32 terms, summed in float64)
        over the other pool rows in their probed cells, at squared distance ``d2``. The same terms as summing
        over :meth:`range_search`'s hits, without gathering the hits: memory stays one distance block."""
        t0 = time.perf_counter()
        rows = np.asarray(rows, dtype=np.int64)
        y = np.ascontiguousarray(self.x[rows], dtype=np.float32)
        sums = np.zeros(len(rows))
        r2 = np.float32(radius2)
        for vecs, cell_rows, _, d2 in self._visits(y):
            kernel = np.divide(d2, r2, out=d2)
            np.subtract(np.float32(1.0), kernel, out=kernel)
            np.maximum(kernel, 0.0, out=kernel)
            own_rows = rows[vecs]
            slot = np.minimum(np.searchsorted(cell_rows, own_rows), len(cell_rows) - 1)
            own = np.flatnonzero(cell_rows[slot] == own_rows)
            kernel[own, slot[own]] = 0.0
            sums[vecs] += kernel.sum(axis=1, dtype=np.float64)
        self.stats["search_seconds"] += time.perf_counter() - t0
        return sums

    def exhaustive(self) -> bool:
        """Whether every search visits every cell (the hits are then the exact ones)."""
        return (self.coarse_probe >= len(self.coarse) and len(self.fine) == len(self.coarse)
                and self.nprobe >= len(self.owner))

    def widen(self) -> bool:
        """Double ``nprobe`` and ``coarse_probe`` (capped at the number of cells) for later searches; False, and
        no change, when every search already visits every cell."""
        if self.exhaustive():
            return False
        self.coarse_probe = min(2 * self.coarse_probe, len(self.coarse))
        self.nprobe *= 2
        return True

    def info(self) -> dict[str, Any]:
        """Settings and work done, for a manifest."""
        return {"kind": "two-level ivf", "coarse_cells": len(self.coarse), "coarse_probe": self.coarse_probe,
                "cell_rows": self.cell_rows, "nprobe": self.nprobe, "coarse_cells_refined": len(self.fine),
                "fine_cells": len(self.owner), "seed": self.seed,
                **{k: (round(v, 4) if isinstance(v, float) else int(v)) for k, v in self.stats.items()}}
