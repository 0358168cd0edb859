"""Exact range search that computes few distances in full: the pool rows within a radius that the brute force
finds, after a screen in bfloat16 that rules most pairs out.

The brute force (:func:`tasksift.index.exact.pool_range_search`) computes every query-row distance in float32.
Here a screen rules pairs out first, by a bound that never rules out a pair the brute force finds:

- Screen: query and pool rows, centred on the pool's mean, are rounded to bfloat16 and multiplied (torch, on
  the CPU's bfloat16 units, float32 sums), which gives every pair's squared distance within a known error
  (:func:`screen_threshold`: the rounding of the vectors, of the sums and of the result). A pair whose
  screened value is at or above the radius plus that error is not within the radius.
- Exact: the pairs left get their float32 squared distance as the brute force computes it
  (``|y|^2 + |x|^2 - 2 y.x``, clipped at 0), in blocks of ``SUB_BLOCK`` queries against the union of their
  candidates. The queries are grouped first by the nearest of ``sqrt(N)`` pool rows drawn at random (cells), so
  the queries of a block share candidates.

A memory-mapped pool (one larger than memory) is read once per call, in row order, ``FUSED_ROWS`` rows at a
time, and both steps run on each slice as it is read: the candidates of the whole pool are never listed (on
clustered data they grow with the pool) and no row is read twice or out of order (gathers from a file larger
than the page cache read it many times over).

The hits are the brute force's: the same rows, in increasing row order per query, their distances equal up to
the float32 rounding of two matrix products (which may also move a pair lying within that rounding of the
radius across it, as two batch sizes of the brute force may). The screen runs where the CPU multiplies
bfloat16 in hardware (:func:`fast_bfloat16`); elsewhere every pair is computed in full by the brute force. The
work is spread over the cores by threads each running torch on one core (:func:`_torch_on_one_thread`).
``stats`` counts it: ``brute_force`` (the pairs of the brute force), ``screened`` (pairs screened in bfloat16),
``compared`` (distances computed in float32), ``cells`` and ``screen`` (1 when it runs).

Two exact bounds were measured on the clustered benchmarks of docs/performance.md and left out. A cell bound
(skipping the k-means cells whose centre is farther than the radius plus their own radius, by the triangle
inequality) left 98-100% of the pool to visit with ``sqrt(N)`` cells: in hundreds of dimensions a cell's
radius is close to the distance between cells. A projection on the pool's leading principal directions
(``||V^T (q - x)|| <= ||q - x||``) made the screen narrower but kept more pairs and cost a pass over the pool:
no faster than the screen at full width.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tasksift.index.blocks import float32_rows, is_mapped, out_of_core, pool_rows
from tasksift.index.exact import kernel_sums, kernel_values, range_search_blocks, range_search_l2
from tasksift.util.env import default_threads
from tasksift.util.spill import scratch

#: queries screened together against one tile of the pool (a bfloat16 product of QUERY_BLOCK x POOL_TILE)
QUERY_BLOCK = 1024
#: pool rows per tile: with QUERY_BLOCK, the product's result (4 MB) stays in the cache
POOL_TILE = 2048
#: queries that share one exact product against the union of their candidates (a power of two)
SUB_BLOCK = 128
#: union rows per exact product (a block's candidates gathered a slice at a time)
UNION_SLICE = 8192
#: rows of a memory-mapped pool read at once, in order, and both screened and compared there (tiles of it)
FUSED_ROWS = 16 * POOL_TILE
#: rows sampled for the pool's mean
MEAN_ROWS = 16384
#: the unit roundoffs of float32 and bfloat16
UNIT32, UNIT16 = 2.0**-24, 2.0**-9


def _gamma(n: int) -> float:
    """The worst-case relative error of a float32 sum of ``n`` products."""
    return n * UNIT32 / (1 - n * UNIT32)


def _max_sq(a: np.ndarray) -> float:
    """The largest squared norm of a row of ``a`` (float32 sums, raised by their worst-case error)."""
    return float(np.einsum("ij,ij->i", a, a).max()) * (1 + _gamma(a.shape[1])) if len(a) else 0.0


def screen_threshold(radius2: float, dim: int, max_sq: float, max_centred_sq: float) -> float:
    """The screened squared distance below which a pair may be within ``radius2`` for the brute force.

    A brute-force hit has float32 ``f < radius2``, so its exact squared distance is below ``radius2 + E_f``
    (``E_f = 2 gamma_{d+2} (|y|^2 + |x|^2)``, the error of ``|y|^2 + |x|^2 - 2 y.x``). Centring a vector in
    float32 and rounding it to bfloat16 moves it by at most ``e = (2^-9 + 2^-23)(1 + 2^-23) sqrt(max_centred_sq)``,
    so the rounded pair is within ``R = sqrt(radius2 + E_f) + 2 e``. The screen's value is that squared distance
    up to the rounding of the squared norms to bfloat16, the float32 sums and the bfloat16 result: at most
    ``E_c = 1.01 (3 * 2^-9 + 3 gamma_{d+2}) 2 max_z``, ``max_z`` the largest squared norm of a rounded vector.
    ``max_sq`` and ``max_centred_sq``: the largest squared norm of a query or pool row, before and after
    centring."""
    full = 2 * _gamma(dim + 2) * 2 * max_sq
    largest = math.sqrt(max_centred_sq) * (1 + 2 * UNIT32)
    reach = math.sqrt(radius2 + full) + 2 * (UNIT16 + 2 * UNIT32) * largest
    error = 1.01 * (3 * UNIT16 + 3 * _gamma(dim + 2)) * 2 * largest**2 * (1 + 2 * UNIT16)
    return (reach * reach + error) * (1 + 8 * UNIT32)


@functools.cache
def fast_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (x86 ``amx_bf16`` or ``avx512_bf16``, Arm
    ``bf16``, as ``cpuinfo`` lists them), where torch's bfloat16 products run several times faster than float32
    ones (5x with AMX on the machine of docs/performance.md); elsewhere they are emulated, and slower."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & {"amx_bf16", "avx512_bf16", "bf16"})


@contextlib.contextmanager
def _torch_on_one_thread() -> Iterator[None]:
    """torch on one thread while inside: the work is spread over the cores by :func:`_on_each_core` instead,
    because on busy cores torch's own threads wait on each other (several times slower than one thread here)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _on_each_core(function: Callable[[int], Any], items: range) -> list[Any]:
    """``function`` over ``items`` on ``default_threads()`` threads (torch and numpy release the interpreter)."""
    with ThreadPoolExecutor(max_workers=default_threads()) as pool:
        return list(pool.map(function, items))


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b.T`` in float32 by torch (on one thread inside :func:`_torch_on_one_thread`)."""
    import torch

    return (torch.from_numpy(np.ascontiguousarray(a)) @ torch.from_numpy(np.ascontiguousarray(b)).T).numpy()


class PrunedRangeSearch:
    """Exact range search (Euclidean ``radius``) of batches of vectors over the pool ``x``, a
    :data:`tasksift.index.exact.RangeSearch`. ``screen``: True or False to use the bfloat16 screen or not,
    None (default): where the CPU multiplies bfloat16 in hardware (:func:`fast_bfloat16`). ``cells``: the
    number of pool rows that group the queries (default ``sqrt(N)``).

    A pool that is memory-mapped or in float16 (:func:`tasksift.index.blocks.out_of_core`) is not copied: its
    rows are read (and converted to float32) where they are used, and without the screen the brute force runs
    block by block. A memory-mapped pool keeps no bfloat16 copy: each tile is rounded when its slice is read
    (the same values; a read of the pool per call, where a stored copy would take half its size in memory)."""

    def __init__(self, x: np.ndarray, radius: float, stats: dict[str, int], *, screen: bool | None = None,
                 cells: int | None = None, seed: int = 0) -> None:
        self.x = pool_rows(x)
        self.radius = float(radius)
        self.radius2 = self.radius ** 2
        self.stats = stats
        self.screen, self.cells, self.seed = screen, cells, int(seed)
        self.built = False

    def _build(self) -> None:
        """The pool's mean, its squared norms (before and after centring), its tiles in bfloat16 and the cells'
        centres, at the first call."""
        t0 = time.perf_counter()
        for key in ("brute_force", "screened", "compared", "cells", "build_ms"):
            self.stats.setdefault(key, 0)
        if self.screen is None:
            self.screen = fast_bfloat16()
        self.stats["screen"] = int(self.screen)
        self.built = True
        if self.screen:
            with _torch_on_one_thread():
                self._set_up()
        self.stats["build_ms"] += round(1000 * (time.perf_counter() - t0))

    def _set_up(self) -> None:
        n, d = self.x.shape
        rng = np.random.default_rng([self.seed, 17])
        sample = float32_rows(self.x, None if n <= MEAN_ROWS else np.sort(rng.choice(n, MEAN_ROWS, replace=False)))
        self.mean = sample.mean(axis=0, dtype=np.float64).astype(np.float32)
        # one float per row: in a scratch file for a memory-mapped pool, whose size must not set the memory used
        self.norms = scratch((n,), np.float32) if is_mapped(self.x) else np.empty(n, dtype=np.float32)
        self.max_centred_sq = 0.0
        for lo in range(0, n, 65536):
            part = float32_rows(self.x, slice(lo, lo + 65536))
            self.norms[lo:lo + len(part)] = np.einsum("ij,ij->i", part, part)
            self.max_centred_sq = max(self.max_centred_sq, _max_sq(part - self.mean))
        self.max_sq = float(self.norms.max()) * (1 + _gamma(d))
        import torch

        self.tile_count = -(-n // POOL_TILE)
        self.tiles: list[Any] | None = None  # a memory-mapped pool: each tile rounded when it is screened
        if not is_mapped(self.x):
            pool = torch.empty((n, d + 2), dtype=torch.bfloat16)  # the pool in bfloat16: half its size in float32
            self.tiles = _on_each_core(lambda number: self._tile(number, out=pool[number * POOL_TILE:]),
                                       range(self.tile_count))
        count = self.cells if self.cells is not None else max(1, math.isqrt(n))
        self.centres = float32_rows(self.x, np.sort(rng.choice(n, min(int(count), n), replace=False))) - self.mean
        self.stats["cells"] = len(self.centres)

    def __call__(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = np.ascontiguousarray(y, dtype=np.float32)
        if len(y) == 0:
            return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        if not self.built:
            self._build()
        self.stats["brute_force"] += len(y) * len(self.x)
        if not self.screen:
            self.stats["compared"] += len(y) * len(self.x)
            if out_of_core(self.x):
                return range_search_blocks(y, self.x, self.radius2)
            return range_search_l2(y, self.x, self.radius2)
        with _torch_on_one_thread():
            return self._search_mapped(y) if is_mapped(self.x) else self._search(y)

    def kernel_sums(self, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """:func:`tasksift.index.exact.kernel_sums` of the hits of ``y`` (the pool rows ``rows``), the kernel's
        radius this search's: the numbers the hits would give, summed block by block as they are found, so that
        no list of every hit is kept (their number grows with the pool)."""
        y, rows = np.ascontiguousarray(y, dtype=np.float32), np.asarray(rows, dtype=np.int64)
        if not self.built:
            self._build()
        if not self.screen or len(y) == 0:
            lims, d2, ids = self(y)
            counts = np.diff(np.asarray(lims, dtype=np.int64))
            return kernel_sums(np.repeat(np.arange(len(y)), counts), np.asarray(d2, np.float32),
                               np.asarray(ids, np.int64), rows, self.radius, len(y))
        self.stats["brute_force"] += len(y) * len(self.x)
        with _torch_on_one_thread():
            return self._search_mapped(y, rows) if is_mapped(self.x) else self._search(y, rows)

    def _plan(self, y: np.ndarray) -> tuple[np.ndarray, Any, float]:
        """The queries' order (grouped by the nearest cell, so that the queries of a block of ``SUB_BLOCK`` share
        candidates), the ordered queries centred, padded to whole blocks and in bfloat16
        (:func:`_augmented`), and the screen's threshold."""
        centred = y - self.mean
        nearest = np.argmin(np.einsum("ij,ij->i", self.centres, self.centres) - 2 * _product(centred, self.centres),
                            axis=1)
        order = np.argsort(nearest, kind="stable")
        threshold = screen_threshold(self.radius2, y.shape[1], max(self.max_sq, _max_sq(y)),
                                     max(self.max_centred_sq, _max_sq(centred)))
        blocks = -(-len(y) // SUB_BLOCK)
        padded = centred[np.concatenate([order, np.repeat(order[-1:], blocks * SUB_BLOCK - len(y))])]
        self.stats["screened"] += len(y) * len(self.x)
        return order, _augmented(padded, query=True), threshold

    def _exact(self, y: np.ndarray, y_norms: np.ndarray, queries: np.ndarray, pool: np.ndarray,
               pool_norms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairs of ``queries`` (rows of ``y``) and ``pool`` (float32 rows, their squared norms
        ``pool_norms``) within the radius, as the brute force computes them (``|y|^2 + |x|^2 - 2 y.x``, clipped
        at 0): ``(position in queries, position in pool, squared distance)``, query by query."""
        d2 = -2.0 * _product(y[queries], pool)
        d2 += np.add.outer(y_norms[queries], pool_norms)  # as faiss rounds it
        np.maximum(d2, 0.0, out=d2)
        i, j = np.nonzero(d2 < np.float32(self.radius2))
        return i, j, d2[i, j]

    def _search(self, y: np.ndarray, query_rows: np.ndarray | None = None) -> Any:
        """The screen of the whole pool, then the exact distances of the pairs it keeps, block by block on every
        core: the hits, or with ``query_rows`` (the queries' pool rows) only their :meth:`kernel_sums`."""
        order, queries, threshold = self._plan(y)
        candidates = self._screen(queries, threshold)
        y_norms = np.einsum("ij,ij->i", y, y)

        def exact(block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            rows, union = order[block * SUB_BLOCK:(block + 1) * SUB_BLOCK], candidates[block]
            found = []
            for lo in range(0, len(union), UNION_SLICE):  # a slice of the union at a time: bounded memory
                part = union[lo:lo + UNION_SLICE]
                i, j, d2 = self._exact(y, y_norms, rows, float32_rows(self.x, part), self.norms[part])
                found.append((i, d2, part[j].astype(np.int64)))
            i, d2, ids = _by_query(*_joined(found))
            if query_rows is not None:  # the block's sums: no list of every hit is kept
                return rows, kernel_sums(i, d2, ids, query_rows[rows], self.radius, len(rows)), ids[:0]
            return rows[i], d2, ids

        found = _on_each_core(exact, range(len(candidates)))
        self.stats["compared"] += sum(min(SUB_BLOCK, len(y) - b * SUB_BLOCK) * len(union)
                                      for b, union in enumerate(candidates))
        if query_rows is not None:
            sums = np.zeros(len(y))
            for rows, part, _ in found:
                sums[rows] = part
            return sums
        return _csr(*_by_query(*_joined(found)), len(y))

    def _search_mapped(self, y: np.ndarray, query_rows: np.ndarray | None = None) -> Any:
        """:meth:`_search` of a memory-mapped pool, read once in row order: the screen and the exact distances
        run together, ``FUSED_ROWS`` rows at a time, on rows read once for both. Nothing kept grows with the
        pool but the hits, and with ``query_rows`` not even those: each slice's kernel values are added to the
        sums as it comes, each query's in increasing row order as :func:`tasksift.index.exact.kernel_sums` adds
        them, so the sums are those of the hits to the bit."""
        order, queries, threshold = self._plan(y)
        y_norms = np.einsum("ij,ij->i", y, y)

        def part(number: int) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], int]:
            lo = number * FUSED_ROWS
            rows = float32_rows(self.x, slice(lo, lo + FUSED_ROWS))  # in order: the file's read-ahead helps
            norms = np.asarray(self.norms[lo:lo + len(rows)])
            kept = [self._screen_tile(queries, _augmented(rows[t:t + POOL_TILE] - self.mean, query=False),
                                      threshold, t) for t in range(0, len(rows), POOL_TILE)]
            block, row = (np.concatenate(values) for values in zip(*kept, strict=True))
            by = np.argsort(block, kind="stable")  # each block's rows stay in increasing order
            block, row = block[by], row[by]
            edges = np.searchsorted(block, np.arange(len(queries) // SUB_BLOCK + 1))
            found, compared = [], 0
            for b in np.flatnonzero(np.diff(edges)):
                near, ids = order[b * SUB_BLOCK:(b + 1) * SUB_BLOCK], row[edges[b]:edges[b + 1]]
                i, j, d2 = self._exact(y, y_norms, near, rows[ids], norms[ids])
                found.append((near[i], d2, ids[j].astype(np.int64) + lo))
                compared += len(near) * len(ids)
            return _joined(found), compared

        hits: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        sums = np.zeros(len(y))
        for (i, d2, ids), compared in _in_order(part, range(-(-len(self.x) // FUSED_ROWS)), 2 * default_threads()):
            self.stats["compared"] += compared
            if query_rows is None:
                hits.append((i, d2, ids))
                continue
            other = ids != query_rows[i]  # slices in row order: each query's values added in increasing row order
            np.add.at(sums, i[other], kernel_values(d2[other], self.radius))
        return sums if query_rows is not None else _csr(*_by_query(*_joined(hits)), len(y))

    def _tile(self, number: int, out: Any = None) -> Any:
        """Tile ``number`` of the centred pool in bfloat16 (:func:`_augmented`): the stored one, or rounded now."""
        if self.tiles is not None:
            return self.tiles[number]
        lo = number * POOL_TILE
        rows = float32_rows(self.x, slice(lo, lo + POOL_TILE))
        return _augmented(rows - self.mean, query=False, out=None if out is None else out[:len(rows)])

    def _screen_tile(self, queries: Any, tile: Any, threshold: float, lo: int) -> tuple[np.ndarray, np.ndarray]:
        """The pairs (block of ``SUB_BLOCK`` queries, pool row ``lo + position``) that the bfloat16 screen keeps
        on one tile: each product is ``[y, |y|^2, 1] . [-2 x, 1, |x|^2]``, the squared distance in bfloat16,
        reduced to its least value per block and pool row, tile row by tile row for each block."""
        import torch

        index_type = np.int32 if len(self.x) < 2**31 else np.int64
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        for q0 in range(0, len(queries), QUERY_BLOCK):
            least = (queries[q0:q0 + QUERY_BLOCK] @ tile.T).view(-1, SUB_BLOCK, len(tile))
            while least.shape[1] > 1:  # halving: twice as fast as amin on bfloat16
                half = least.shape[1] // 2
                least = torch.minimum(least[:, :half], least[:, half:])
            # compared in float32: a bfloat16 comparison would round the threshold
            block, row = np.nonzero((least[:, 0].float() < threshold).numpy())
            parts.append(((block + q0 // SUB_BLOCK).astype(np.int32), (row + lo).astype(index_type)))
        return np.concatenate([b for b, _ in parts]), np.concatenate([r for _, r in parts])

    def _screen(self, queries: Any, threshold: float) -> list[np.ndarray]:
        """For each block of ``SUB_BLOCK`` queries (ordered and padded by :meth:`_plan`): the pool rows
        (ascending) that the screen keeps for at least one of them, the pool's tiles shared among the cores."""
        kept = _on_each_core(lambda number: self._screen_tile(queries, self._tile(number), threshold,
                                                              number * POOL_TILE), range(self.tile_count))
        block_parts, row_parts = [b for b, _ in kept], [r for _, r in kept]
        kept.clear()
        return _by_block(block_parts, row_parts, len(queries) // SUB_BLOCK)


def _by_block(block_parts: list[np.ndarray], row_parts: list[np.ndarray], blocks: int) -> list[np.ndarray]:
    """The pairs (block, pool row) the screen kept, tile by tile, as each block's pool rows in increasing order
    (the tiles come in row order and a stable sort by block keeps it). Only the kept pairs are stored, never a
    mask of every block and pool row, so the memory follows the pairs kept, not the pool's size."""
    block, row = np.concatenate(block_parts), np.concatenate(row_parts)
    block_parts.clear()  # the caller's lists: each tile's pairs freed once joined
    row_parts.clear()
    # a mask per block keeps the rows in tile order, ascending, with a byte per pair where a sort would take eight
    return [row[block == b] for b in range(blocks)]  # int32 below 2^31 rows: half the memory of int64


def _in_order(function: Callable[[int], Any], items: range, ahead: int) -> Iterator[Any]:
    """``function`` over ``items`` on ``default_threads()`` threads, the results in order, at most ``ahead`` of
    them computed before they are taken (so that the memory they hold is bounded)."""
    with ThreadPoolExecutor(max_workers=default_threads()) as pool:
        pending: collections.deque[Any] = collections.deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _joined(found: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lists of ``(query, squared distance, pool row)`` joined in their order."""
    return (np.concatenate([np.zeros(0, np.int64)] + [np.asarray(i, np.int64) for i, _, _ in found]),
            np.concatenate([np.zeros(0, np.float32)] + [d for _, d, _ in found]),
            np.concatenate([np.zeros(0, np.int64)] + [r for _, _, r in found]))


def _by_query(i: np.ndarray, d2: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hits sorted by query, stably: each query's keep the order they had (increasing pool row)."""
    by = np.argsort(i, kind="stable")
    return i[by], d2[by], ids[by]


def _csr(i: np.ndarray, d2: np.ndarray, ids: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """faiss's CSR ``(lims, d2, ids)`` of hits sorted by query."""
    lims = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.bincount(i, minlength=count), out=lims[1:])
    return lims, d2, ids


def _augmented(v: np.ndarray, *, query: bool, out: Any = None) -> Any:
    """``[v, |v|^2, 1]`` for queries and ``[-2 v, 1, |v|^2]`` for pool rows, in bfloat16 (a torch tensor, ``out``
    if given; its products are squared distances), ``v`` and its squared norms rounded to bfloat16."""
    import torch

    d = v.shape[1]
    out = torch.empty((len(v), d + 2), dtype=torch.bfloat16) if out is None else out
    out[:, :d] = torch.from_numpy(np.ascontiguousarray(v))  # rounded; -2 v below is exact in bfloat16
    wide = out[:, :d].float()
    norms = torch.einsum("ij,ij->i", wide, wide)
    if query:
        out[:, d], out[:, d + 1] = norms, 1.0
    else:
        out[:, :d] *= -2
        out[:, d], out[:, d + 1] = 1.0, norms
    return out
