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

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tasksift.index.blocks import float32_rows, is_mapped, out_of_core, pool_rows, scratch
from tasksift.index.exact import kernel_sums, range_search_blocks, range_search_l2
from tasksift.util.env import default_threads

#: queries screened together against one tile of the pool (a bfloat16 product of QUERY_BLOCK x POOL_TILE)
QUERY_BLOCK = 1024
#: pool rows per tile: with QUERY_BLOCK, the product's result (4 MB) stays in the cache
POOL_TILE = 2048
#: queries that share one exact product against the union of their candidates (a power of two)
SUB_BLOCK = 128
#: union rows per exact product (a block's candidates gathered a slice at a time)
UNION_SLICE = 8192
#: bytes of a memory-mapped pool's rows gathered at once, in row order, for the exact distances of some blocks
GATHER_BYTES = 128 << 20
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
    block by block. The screen of a memory-mapped pool keeps no bfloat16 copy of it: each tile is rounded from
    the pool's rows when it is screened (the same values; a read of the pool per call, where a stored copy would
    take half the pool's size in memory). The hits are the same."""

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
            return self._search(y)

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
            return self._search(y, rows)

    def _search(self, y: np.ndarray, query_rows: np.ndarray | None = None) -> Any:
        """The screen, then the exact distances of the pairs it keeps, block by block on every core: the hits,
        or with ``query_rows`` (the queries' pool rows) only their :meth:`kernel_sums`."""
        centred = y - self.mean
        nearest = np.argmin(np.einsum("ij,ij->i", self.centres, self.centres) - 2 * _product(centred, self.centres),
                            axis=1)
        order = np.argsort(nearest, kind="stable")  # queries grouped by cell
        threshold = screen_threshold(self.radius2, y.shape[1], max(self.max_sq, _max_sq(y)),
                                     max(self.max_centred_sq, _max_sq(centred)))
        candidates = self._screen(centred[order], threshold)
        y_norms = np.einsum("ij,ij->i", y, y)
        radius2 = np.float32(self.radius2)

        def exact(block: int, rows_of: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            rows, union = order[block * SUB_BLOCK:(block + 1) * SUB_BLOCK], candidates[block]
            found = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.float32)], [np.zeros(0, dtype=np.int64)]
            for lo in range(0, len(union), UNION_SLICE):  # a slice of the union at a time: bounded memory
                part = union[lo:lo + UNION_SLICE]
                d2 = -2.0 * _product(y[rows], rows_of(part))
                d2 += np.add.outer(y_norms[rows], self.norms[part])  # (|y|^2 + |x|^2) - 2 y.x, as faiss rounds it
                np.maximum(d2, 0.0, out=d2)
                i, j = np.nonzero(d2 < radius2)
                for into, value in zip(found, (i, d2[i, j], part[j].astype(np.int64)), strict=True):
                    into.append(value)
            i, d2, ids = (np.concatenate(values) for values in found)
            by_query = np.argsort(i, kind="stable")  # each query's hits stay in increasing row order
            if query_rows is not None:
                return (kernel_sums(i[by_query], d2[by_query], ids[by_query], query_rows[rows],
                                    self.radius, len(rows)),)
            return np.bincount(i, minlength=len(rows)), d2[by_query], ids[by_query]

        found: list[Any] = []
        for first, stop, rows_of in self._gathers(candidates):
            found += _on_each_core(functools.partial(_with, exact, rows_of), range(first, stop))
            del rows_of  # one group's gathered rows alive at a time
        self.stats["compared"] += sum(min(SUB_BLOCK, len(y) - b * SUB_BLOCK) * len(union)
                                      for b, union in enumerate(candidates))
        if query_rows is not None:
            sums = np.zeros(len(y))
            sums[order] = np.concatenate([part[0] for part in found])
            return sums
        counts = np.zeros(len(y), dtype=np.int64)
        counts[order] = np.concatenate([c for c, _, _ in found])
        return _in_query_order(order, counts, [d2 for _, d2, _ in found], [ids for _, _, ids in found])

    def _gathers(self, candidates: list[np.ndarray]
                 ) -> Iterator[tuple[int, int, Callable[[np.ndarray], np.ndarray]]]:
        """Groups of consecutive blocks ``(first, stop, rows_of)``, ``rows_of(rows)`` their float32 pool rows. In
        memory: one group, rows gathered where they are used. Memory-mapped: the union of a group's candidates
        (at most ``GATHER_BYTES``) read at once in row order, because gathering where they are used would read the
        file's pages in random order, many times over when the page cache cannot hold the pool; a block whose
        candidates alone exceed it reads them where they are used. The rows, and the distances, are the same."""
        def direct(rows: np.ndarray) -> np.ndarray:
            return float32_rows(self.x, rows)

        if not is_mapped(self.x):
            yield 0, len(candidates), direct
            return
        limit = max(1, GATHER_BYTES // (4 * self.x.shape[1]))
        first = 0
        while first < len(candidates):
            stop, size = first + 1, len(candidates[first])
            while stop < len(candidates) and size + len(candidates[stop]) <= limit:
                size, stop = size + len(candidates[stop]), stop + 1
            if size > limit:
                yield first, stop, direct
            else:
                union = np.unique(np.concatenate(candidates[first:stop]))
                gathered = float32_rows(self.x, union)
                yield first, stop, functools.partial(_lookup, union, gathered)
                del gathered, union
            first = stop

    def _tile(self, number: int, out: Any = None) -> Any:
        """Tile ``number`` of the centred pool in bfloat16 (:func:`_augmented`): the stored one, or rounded now."""
        if self.tiles is not None:
            return self.tiles[number]
        lo = number * POOL_TILE
        rows = float32_rows(self.x, slice(lo, lo + POOL_TILE))
        return _augmented(rows - self.mean, query=False, out=None if out is None else out[:len(rows)])

    def _screen(self, centred: np.ndarray, threshold: float) -> list[np.ndarray]:
        """For each block of ``SUB_BLOCK`` (centred, grouped) queries: the pool rows (ascending) that the
        bfloat16 screen keeps for at least one of them. Each product is ``[y, |y|^2, 1] . [-2 x, 1, |x|^2]``,
        the squared distance, in bfloat16, reduced to its least value per block and pool row; the pool's tiles
        are shared among the cores (:func:`_on_each_core`)."""
        import torch

        blocks = -(-len(centred) // SUB_BLOCK)
        padded = np.concatenate([centred, np.repeat(centred[-1:], blocks * SUB_BLOCK - len(centred), axis=0)])
        index_type = np.int32 if len(self.x) < 2**31 else np.int64
        kept: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0, np.int32), np.zeros(0, index_type))] * \
            self.tile_count

        def screen(number: int) -> None:
            tile, lo = self._tile(number), number * POOL_TILE
            parts: list[tuple[np.ndarray, np.ndarray]] = []
            for q0 in range(0, len(padded), QUERY_BLOCK):
                least = (queries[q0:q0 + QUERY_BLOCK] @ tile.T).view(-1, SUB_BLOCK, len(tile))
                while least.shape[1] > 1:  # halving: twice as fast as amin on bfloat16
                    half = least.shape[1] // 2
                    least = torch.minimum(least[:, :half], least[:, half:])
                # compared in float32: a bfloat16 comparison would round the threshold
                block, row = np.nonzero((least[:, 0].float() < threshold).numpy())
                parts.append(((block + q0 // SUB_BLOCK).astype(np.int32), (row + lo).astype(index_type)))
            kept[number] = (np.concatenate([b for b, _ in parts]), np.concatenate([r for _, r in parts]))

        queries = _augmented(padded, query=True)
        _on_each_core(screen, range(self.tile_count))
        self.stats["screened"] += len(centred) * len(self.x)
        block_parts, row_parts = [b for b, _ in kept], [r for _, r in kept]
        kept.clear()
        return _by_block(block_parts, row_parts, blocks)


def _by_block(block_parts: list[np.ndarray], row_parts: list[np.ndarray], blocks: int) -> list[np.ndarray]:
    """The pairs (block, pool row) the screen kept, tile by tile, as each block's pool rows in increasing order
    (the tiles come in row order and a stable sort by block keeps it). Only the kept pairs are stored, never a
    mask of every block and pool row, so the memory follows the pairs kept, not the pool's size."""
    block, row = np.concatenate(block_parts), np.concatenate(row_parts)
    block_parts.clear()  # the caller's lists: each tile's pairs freed once joined
    row_parts.clear()
    # a mask per block keeps the rows in tile order, ascending, with a byte per pair where a sort would take eight
    return [row[block == b] for b in range(blocks)]  # int32 below 2^31 rows: half the memory of int64


def _with(function: Callable[..., Any], extra: Any, item: Any) -> Any:
    return function(item, extra)


def _lookup(union: np.ndarray, gathered: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The rows ``rows`` (a sorted subset of ``union``) among ``gathered``, the rows of ``union``."""
    return gathered[np.searchsorted(union, rows)]


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
