"""Exact search over a pool matrix held in place: no index to build and no copy of the pool.

- :class:`InPlaceSearch`: k-nearest neighbours by faiss's brute force (``faiss.knn``);
- :func:`pool_range_search`: every pool row within a Euclidean radius (faiss's ``range_search_L2sqr``, through
  :func:`range_search_l2`, which a sharded search runs on each shard).

A pool that is memory-mapped or stored in float16 (:func:`tasksift.index.blocks.out_of_core`) is read block by
block (:mod:`tasksift.index.blocks`, :func:`range_search_blocks`), with the same answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasksift.index.blocks import BlockIndex, blocks, float32_rows, out_of_core
from tasksift.index.sharded import exact_search, merge_range

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
    blockwise = among is None and out_of_core(x)
    pool = x if blockwise else float32_rows(x, among)
    r2 = float(radius) ** 2

    def search(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lims, d2, ids = range_search_blocks(y, pool, r2) if blockwise else range_search_l2(y, pool, r2)
        stats["compared"] = stats.get("compared", 0) + len(y) * len(pool)
        return lims, d2, ids if among is None else among[ids]

    return search


def kernel_sums(pos: np.ndarray, d2: np.ndarray, ids: np.ndarray, rows: np.ndarray, sigma: float, count: int
                ) -> np.ndarray:
    """Per query, the sum in float64 of ``1 - d^2 / sigma^2`` over its hits that are not the query's own pool
    row (``rows[pos]``): ``pos`` the query of each hit, ``d2`` its squared distance (float32), ``ids`` its pool
    row. Computed in float32 and summed in hit order, each query's hits in increasing row order, so every exact
    range search that lists the same hits gives the same sums bit for bit."""
    other = ids != rows[pos]
    return np.bincount(pos[other], weights=kernel_values(d2[other], sigma), minlength=count)


def kernel_values(d2: np.ndarray, sigma: float) -> np.ndarray:
    """``1 - d^2 / sigma^2`` clipped at 0, computed in float32 from squared distances ``d2`` (float32), in
    float64: the terms that :func:`kernel_sums` adds."""
    return np.maximum(1.0 - d2 / np.float32(sigma**2), 0.0).astype(np.float64)


def range_search_l2(y: np.ndarray, pool: np.ndarray, radius2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row of ``pool`` (float32, C-contiguous) with a squared L2 distance below ``radius2`` from each row
    of ``y``, by faiss's brute force on ``pool`` in place: faiss's CSR ``(lims, squared distances, rows)``, each
    query's hits in increasing row order."""
    import faiss

    y = np.ascontiguousarray(y, dtype=np.float32)
    result = faiss.RangeSearchResult(len(y))
    faiss.range_search_L2sqr(faiss.swig_ptr(y), faiss.swig_ptr(pool), pool.shape[1], len(y), len(pool),
                             float(radius2), result)
    lims = faiss.rev_swig_ptr(result.lims, len(y) + 1).astype(np.int64)
    hits = int(lims[-1])
    d2 = faiss.rev_swig_ptr(result.distances, hits).copy()
    ids = faiss.rev_swig_ptr(result.labels, hits).astype(np.int64)
    return lims, d2, ids


def range_search_blocks(y: np.ndarray, x: np.ndarray, radius2: float, rows: int | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`range_search_l2` of ``y`` over ``x`` (float32 or float16, memory-mapped or not) read ``rows`` pool
    rows at a time (:func:`tasksift.index.blocks.blocks`): the same CSR ``(lims, squared distances, pool rows)``
    as one search over the whole matrix, each query's hits in increasing row order."""
    y = np.ascontiguousarray(y, dtype=np.float32)
    parts, offsets = [], []
    for lo, block in blocks(x, rows):
        parts.append(range_search_l2(y, block, radius2))
        offsets.append(lo)
    return merge_range(parts, offsets)


@dataclass
class InPlaceSearch:
    """Exact k-nearest-neighbour search by faiss's brute force on the pool matrix itself (``faiss.knn``): no
    index to build and no copy of the pool. Same ``search`` and ``info`` as a :class:`NeighbourIndex`. A pool
    that is memory-mapped or in float16 is searched block by block (:class:`tasksift.index.blocks.BlockIndex`),
    with the same answers."""

    x: np.ndarray

    def __post_init__(self) -> None:
        self.blocks = BlockIndex(self.x) if out_of_core(self.x) else None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Canonical answer: ties ordered, and cut, by increasing row (as every engine's exact search)."""
        import faiss

        if self.blocks is not None:
            return self.blocks.search(queries, k)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        return exact_search(lambda y, depth: faiss.knn(y, self.x, depth), q, int(k), len(self.x), False)

    def info(self) -> dict[str, Any]:
        if self.blocks is not None:
            return self.blocks.info()
        return {"kind": "flat", "metric": "l2", "rows": int(self.x.shape[0]), "dim": int(self.x.shape[1]),
                "build_seconds": 0.0, "exact": True, "in_place": True}
