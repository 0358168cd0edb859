"""Exact nearest-neighbour search over a pool cut into shards: the merge per query, kept apart from who runs it.

The pool's rows are cut into contiguous shards (:func:`shard_bounds`); each shard is searched on its own (by
the Ray engine, in parallel, one worker per shard) and the per-shard answers are merged per query here.

Order and ties. Every exact answer is *canonical*: a query's neighbours are ordered by their value (squared
distance increasing for ``l2``, similarity decreasing for ``ip`` / ``cosine``) and, among equal values, by
increasing row number; the ``k`` kept are the first ``k`` of that order. faiss's own flat search keeps ties by
row for ``l2`` but not for inner products, so :func:`exact_search` wraps any exact search function and repairs
that: it asks for a few more than ``k``, sorts canonically, and where the value at the cut is tied with the
first row left out it asks again for more, until every row tied at the cut is seen. A merge of canonical
per-shard answers (with rows offset to pool rows) is then the canonical answer over the whole pool, whatever
the number of shards: the property the tests check against one unsharded index.

Range search (every row within a radius) merges by concatenation: shard ``s``'s hits of a query come after
those of shard ``s - 1``, so a query's hits are in increasing row order, as faiss's brute force gives them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

#: a search function: ``(queries, k) -> (values, rows)``, each ``(n_queries, k)``, ``-1`` for a missing row
SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
#: extra neighbours asked for beyond ``k`` to see ties at the cut (doubled while a tie runs past them)
TIE_MARGIN = 8


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of ``shards`` contiguous slices of ``n`` rows, sizes differing by at most one
    (fewer slices when ``n < shards``; none when ``n == 0``)."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    shards = min(shards, n)
    if shards == 0:
        return []
    edges = [n * s // shards for s in range(shards + 1)]
    return [(edges[s], edges[s + 1]) for s in range(shards)]


def _sort_key(values: np.ndarray, rows: np.ndarray, larger_is_closer: bool) -> np.ndarray:
    """A float64 key, increasing towards the far end, with missing rows (``-1``) last."""
    key = np.asarray(values, dtype=np.float64)
    key = -key if larger_is_closer else key.copy()
    key[rows < 0] = np.inf
    return key


def canonical_topk(values: np.ndarray, rows: np.ndarray, k: int, larger_is_closer: bool
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` columns of each row of ``(values, rows)`` after sorting by (value, row), missing last.

    Missing entries come back as value ``inf`` (``-inf`` when larger is closer) and row ``-1``.
    """
    values = np.asarray(values)
    rows = np.asarray(rows, dtype=np.int64)
    m, width = rows.shape
    k = int(min(k, width))
    key = _sort_key(values, rows, larger_is_closer)
    tie_rows = np.where(rows < 0, np.iinfo(np.int64).max, rows)
    order = np.lexsort((tie_rows, key), axis=1)[:, :k] if m else np.zeros((0, k), dtype=np.int64)
    out_rows = np.take_along_axis(rows, order, axis=1)
    out_values = np.take_along_axis(values, order, axis=1)
    missing = out_rows < 0
    if missing.any():
        out_values = out_values.astype(values.dtype, copy=True)
        out_values[missing] = -np.inf if larger_is_closer else np.inf
    return out_values, out_rows


def exact_search(search: SearchFn, queries: np.ndarray, k: int, n: int, larger_is_closer: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The canonical ``k`` nearest of ``n`` rows (see the module docstring) from an exact ``search``.

    ``search`` must return exact values; which of several tied rows it keeps at its own cut does not matter.
    Rows tied at the cut are resolved by asking again with a deeper list, for the queries that need it only.
    """
    k = int(min(k, n))
    m = len(queries)
    if k <= 0 or m == 0:
        return np.zeros((m, max(k, 0)), dtype=np.float32), np.zeros((m, max(k, 0)), dtype=np.int64)
    out_values = out_rows = None
    todo = np.arange(m)
    depth = min(n, k + TIE_MARGIN)
    # faiss picks its distance kernel by the number of queries in a batch (BLAS from queries x dim >= 128,000,
    # its own SIMD loops below), and the kernels round differently in the last bit: a deeper search for some of
    # the queries is padded with copies of them to the size of the first batch, so every value of a query comes
    # from the kernel that computed the first batch (and the same kernel serves every shard of a sharded search)
    while len(todo):
        batch = todo if len(todo) == m else np.resize(todo, m)
        values, rows = search(queries[batch], depth)
        values, rows = np.asarray(values)[:len(todo)], np.asarray(rows, dtype=np.int64)[:len(todo)]
        top_values, top_rows = canonical_topk(values, rows, k, larger_is_closer)
        if out_values is None:
            out_values = np.empty((m, k), dtype=top_values.dtype)
            out_rows = np.empty((m, k), dtype=np.int64)
        out_values[todo], out_rows[todo] = top_values, top_rows
        if depth >= n:
            break
        # a query is settled unless its k-th value is tied with the deepest value it was given: then rows with
        # that value may have been cut by the search and one of them may have a smaller row number
        key = _sort_key(values, rows, larger_is_closer)
        deepest = key.max(axis=1)
        kth = _sort_key(top_values, top_rows, larger_is_closer)[:, -1]
        unsettled = np.isfinite(kth) & (kth >= deepest)
        todo = todo[unsettled]
        depth = min(n, depth * 2)
    assert out_values is not None and out_rows is not None
    return out_values, out_rows


def merge_topk(parts: Sequence[tuple[np.ndarray, np.ndarray]], offsets: Sequence[int], k: int,
               larger_is_closer: bool) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard answers ``(values, local rows)`` into the ``k`` nearest pool rows of each query.

    ``offsets[s]`` is the pool row of shard ``s``'s first row. Each part may have any number of columns; the
    result has ``min(k, total columns)``, in canonical order (missing entries last, row ``-1``).
    """
    if len(parts) != len(offsets):
        raise ValueError("one offset per part")
    values = np.concatenate([np.asarray(v) for v, _ in parts], axis=1)
    rows = np.concatenate([np.where(np.asarray(r) < 0, -1, np.asarray(r, dtype=np.int64) + off)
                           for (_, r), off in zip(parts, offsets, strict=True)], axis=1)
    return canonical_topk(values, rows, k, larger_is_closer)


def merge_range(parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], offsets: Sequence[int]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-shard range-search answers in faiss's CSR layout ``(lims, values, local rows)`` into one
    ``(lims, values, pool rows)``: each query's hits, shard after shard."""
    if not parts:
        raise ValueError("nothing to merge")
    counts = np.stack([np.diff(np.asarray(lims, dtype=np.int64)) for lims, _, _ in parts])  # shards x queries
    lims = np.zeros(counts.shape[1] + 1, dtype=np.int64)
    np.cumsum(counts.sum(axis=0), out=lims[1:])
    total = int(lims[-1])
    first = parts[0][1]
    values = np.empty(total, dtype=np.asarray(first).dtype)
    rows = np.empty(total, dtype=np.int64)
    # where shard s's hits of query i start in the merged arrays
    starts = lims[:-1][None, :] + np.cumsum(counts, axis=0) - counts
    for s, ((part_lims, part_values, part_rows), off) in enumerate(zip(parts, offsets, strict=True)):
        part_lims = np.asarray(part_lims, dtype=np.int64)
        n_hits = int(part_lims[-1])
        if n_hits == 0:
            continue
        query = np.repeat(np.arange(counts.shape[1]), counts[s])
        dest = starts[s][query] + (np.arange(n_hits) - part_lims[:-1][query])
        values[dest] = np.asarray(part_values)[:n_hits]
        rows[dest] = np.asarray(part_rows, dtype=np.int64)[:n_hits] + off
    return lims, values, rows
