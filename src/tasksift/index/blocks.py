"""Exact search over a pool read block by block: a pool larger than memory, or one stored in float16.

A pool matrix may be memory-mapped (a ``--pool-vectors`` ``.npy`` file, the feature cache's joined file) or held
in float16 (half the memory; ``features dtype=float16``). Nothing here copies the whole pool: rows are read
``block_rows`` at a time (:func:`blocks`), converted to float32, searched with faiss and forgotten, so the
memory a search holds is its answers and one block, whatever the pool's size; the pages of a mapped file are
the kernel's page cache, which it takes back when memory is short.

- :class:`BlockIndex`: exact top-k (``l2``, ``ip``, ``cosine``), each block searched by faiss's brute force
  (``faiss.knn``) and the answers kept in one bounded heap per query (``faiss.ResultHeap``); the result is made
  canonical (ties ordered by row) by :func:`tasksift.index.sharded.exact_search`, as every exact search is.
- :func:`tasksift.index.exact.range_search_blocks`: every pool row within a radius, block after block, merged
  in row order.

faiss computes each query-row distance the same way whatever block the row falls in (the kernel depends on the
number of queries, not of rows), so both give the answers of the same search over the whole matrix at once,
to the bit; the tests check it with blocks of a few rows.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from typing import Any

import numpy as np

from tasksift.index.search import normalize_rows
from tasksift.index.sharded import exact_search
from tasksift.util.errors import InputError

#: bytes of float32 rows read, converted and searched at a time
BLOCK_BYTES = 64 << 20
#: the storage types a block-wise pool may have
POOL_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


def block_rows(dim: int) -> int:
    """Rows per block for ``dim`` columns: ``BLOCK_BYTES`` of float32, a multiple of 1024 rows (at least 1024)."""
    return max(1024, BLOCK_BYTES // (4 * max(1, int(dim))) // 1024 * 1024)


def is_mapped(x: Any) -> bool:
    """Whether the array's memory is a memory map (of a file), directly or through views of one."""
    while x is not None:
        if isinstance(x, np.memmap | mmap.mmap):
            return True
        x = getattr(x, "base", None)
    return False


def out_of_core(x: np.ndarray) -> bool:
    """Whether ``x`` is searched block by block: memory-mapped, or stored in float16."""
    return is_mapped(x) or x.dtype == np.float16


def pool_rows(x: Any) -> np.ndarray:
    """``x`` as a C-contiguous float32 or float16 matrix: itself (no copy) when it already is one (a memory map
    stays one), a float32 copy otherwise."""
    x = np.asarray(x)
    if x.dtype in POOL_DTYPES and x.flags.c_contiguous:
        return x
    return np.ascontiguousarray(x, dtype=np.float32)


def _mapping(x: Any) -> mmap.mmap | None:
    """The ``mmap`` under ``x`` (through views of a memory map), if any."""
    while x is not None:
        if isinstance(x, mmap.mmap):
            return x
        found = getattr(x, "_mmap", None)
        if isinstance(found, mmap.mmap):
            return found
        x = getattr(x, "base", None)
    return None


def float32_rows(x: np.ndarray, rows: Any = None) -> np.ndarray:
    """Rows of ``x`` (all, a slice or a gather) as a C-contiguous float32 matrix; float32 rows are not copied
    when they already are contiguous.

    A gather from a memory-mapped file is read with the kernel told to expect random reads (``MADV_RANDOM``):
    each row read then costs its own pages, where the default read-ahead fetches far more around each of them,
    and reads the file many times over when the page cache is small (a pool larger than memory). The advice is
    set back to normal after, for the block-by-block reads."""
    if rows is None or isinstance(rows, slice):
        return np.ascontiguousarray(x if rows is None else x[rows], dtype=np.float32)
    mapping = _mapping(x)
    if mapping is None or not hasattr(mmap, "MADV_RANDOM"):
        return np.ascontiguousarray(x[rows], dtype=np.float32)
    mapping.madvise(mmap.MADV_RANDOM)
    try:
        return np.ascontiguousarray(x[rows], dtype=np.float32)
    finally:
        mapping.madvise(mmap.MADV_NORMAL)


def blocks(x: np.ndarray, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, float32 block)`` over ``x``, ``rows`` rows at a time (default :func:`block_rows`)."""
    step = int(rows) if rows else block_rows(x.shape[1])
    for lo in range(0, x.shape[0], step):
        yield lo, float32_rows(x, slice(lo, lo + step))


class BlockIndex:
    """Exact search over the rows of ``x`` read ``block_rows`` at a time (see the module docstring): the same
    ``search`` and ``info`` as a flat :class:`tasksift.index.NeighbourIndex` over ``x``, and the same answers,
    without a copy of the pool. ``metric``: ``l2`` (squared distances, increasing), ``ip`` or ``cosine``
    (similarities, decreasing; ``cosine`` normalises the queries and each block's rows)."""

    kind = "flat"

    def __init__(self, x: np.ndarray, metric: str = "l2", rows: int | None = None) -> None:
        self.x = pool_rows(x)
        self.metric = metric
        self.n, self.dim = int(self.x.shape[0]), int(self.x.shape[1])
        self.block_rows = int(rows) if rows else block_rows(self.dim)
        self.passes = 0

    @property
    def larger_is_closer(self) -> bool:
        return self.metric != "l2"

    def _block(self, block: np.ndarray) -> np.ndarray:
        return normalize_rows(block) if self.metric == "cosine" else block

    def _raw(self, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``depth`` best rows of each query (exact values; ties at the cut in no particular order)."""
        import faiss

        metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        heap = faiss.ResultHeap(len(queries), depth, keep_max=self.larger_is_closer)
        for lo, block in blocks(self.x, self.block_rows):
            values, rows = faiss.knn(queries, self._block(block), min(depth, len(block)), metric=metric)
            heap.add_result(values, rows + lo)
        heap.finalize()
        self.passes += 1
        return heap.D, heap.I

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The canonical ``k`` nearest rows of every query: ``(values, rows)``, ties ordered by row."""
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InputError(f"query vectors have shape {q.shape}, the index holds {self.dim}-dimensional rows")
        if self.metric == "cosine":
            q = normalize_rows(q)
        return exact_search(self._raw, q, int(min(k, self.n)), self.n, self.larger_is_closer)

    def info(self) -> dict[str, Any]:
        return {"kind": "flat", "metric": self.metric, "rows": self.n, "dim": self.dim, "build_seconds": 0.0,
                "exact": True, "in_place": True, "block_rows": self.block_rows, "pool_dtype": str(self.x.dtype),
                "memory_mapped": is_mapped(self.x), "passes": self.passes}

