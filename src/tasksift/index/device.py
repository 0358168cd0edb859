"""Exact searches by torch matrix products on a device (a GPU), for ``--device cuda``.

:class:`DeviceSearch` answers what :class:`tasksift.index.searcher.LocalSearch` answers, exactly, with the pool's
blocks on the device: k-nearest neighbours (squared L2, inner product or cosine) and range searches (squared L2)
are blocks of ``queries @ pool_block.T``, kept by ``torch.topk`` or a mask, merged block after block. Ties are
ordered and cut by increasing row (:func:`tasksift.index.sharded.exact_search`), as the CPU's exact search does.

Differences from the CPU, by design: ``kind="auto"`` is exact at any size (the CPU switches to an approximate IVF
index above :data:`tasksift.index.search.FLAT_MAX_ROWS` rows; on a GPU the exact products are cheap); IVF and HNSW,
asked for by name, are built by faiss on the CPU. Distances come from torch's float32 products, so a distance can
differ from faiss's in its last bits, and a row exactly at a tie or at the radius may fall the other way.

The pool's blocks are copied to the device once and kept while they fit in ``memory_fraction`` of its free
memory; past that, later blocks are copied for each search. Nothing here needs a GPU: on ``device="cpu"`` it
runs with torch on the CPU, which is how it is tested.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tasksift.index.exact import RangeSearch
from tasksift.index.search import METRICS, normalize_rows
from tasksift.index.searcher import LocalSearch
from tasksift.index.sharded import exact_search, merge_range
from tasksift.util.errors import InputError

#: pool rows per block on the device
BLOCK_ROWS = 1 << 18
#: queries per product (a product is QUERY_ROWS x BLOCK_ROWS float32 values: 2 GiB)
QUERY_ROWS = 2048


class DevicePool:
    """A pool matrix cut into blocks of rows on ``device`` (float32), each block's squared norms beside it."""

    def __init__(self, x: np.ndarray, device: torch.device, *, block_rows: int = BLOCK_ROWS,
                 memory_fraction: float = 0.5) -> None:
        if x.ndim != 2 or x.shape[0] == 0:
            raise InputError(f"cannot search vectors of shape {x.shape}: need a non-empty rows x dimensions matrix")
        self.x, self.device, self.block_rows = x, device, int(block_rows)
        self.n, self.dim = int(x.shape[0]), int(x.shape[1])
        budget = _free_bytes(device) * memory_fraction
        self._kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._keep_rows = int(budget // (4 * (self.dim + 1))) if budget else self.n

    def blocks(self) -> Any:
        """``(first row, block, squared norms)`` over the pool, in row order."""
        for lo in range(0, self.n, self.block_rows):
            if lo in self._kept:
                block, norms = self._kept[lo]
            else:
                block = torch.from_numpy(np.ascontiguousarray(self.x[lo:lo + self.block_rows], dtype=np.float32))
                block = block.to(self.device)
                norms = (block * block).sum(dim=1)
                if lo + len(block) <= self._keep_rows:
                    self._kept[lo] = (block, norms)
            yield lo, block, norms


def _free_bytes(device: torch.device) -> float:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free)
    return 0.0  # the CPU: blocks are views of the pool, nothing to keep


class DeviceIndex:
    """Exact k-nearest-neighbour search over a pool on a device (see the module docstring)."""

    def __init__(self, x: np.ndarray, metric: str, device: torch.device, **pool: Any) -> None:
        if metric not in METRICS:
            raise InputError(f"unknown metric {metric!r}", fix=f"choose one of {', '.join(METRICS)}")
        self.metric = metric
        self.pool = DevicePool(normalize_rows(np.asarray(x)) if metric == "cosine" else np.asarray(x), device,
                               **pool)

    @property
    def larger_is_closer(self) -> bool:
        return self.metric != "l2"

    def _top(self, y: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        device = self.pool.device
        out_v, out_r = [], []
        for qs in range(0, len(y), QUERY_ROWS):
            q = torch.from_numpy(np.ascontiguousarray(y[qs:qs + QUERY_ROWS])).to(device)
            best_v = best_r = None
            for lo, block, norms in self.pool.blocks():
                scores = q @ block.T
                if self.metric == "l2":
                    scores = ((q * q).sum(dim=1, keepdim=True) - 2 * scores + norms).clamp_(min=0)
                v, r = torch.topk(scores, min(depth, len(block)), dim=1, largest=self.larger_is_closer)
                r = r + lo
                if best_v is not None:
                    v, r = torch.cat([best_v, v], dim=1), torch.cat([best_r, r], dim=1)
                    v, keep = torch.topk(v, min(depth, v.shape[1]), dim=1, largest=self.larger_is_closer)
                    r = torch.gather(r, 1, keep)
                best_v, best_r = v, r
            out_v.append(best_v.cpu().numpy())
            out_r.append(best_r.cpu().numpy())
        return np.concatenate(out_v).astype(np.float32), np.concatenate(out_r).astype(np.int64)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest pool rows of every query: ``(values, rows)``, ties cut by increasing row."""
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.pool.dim:
            raise InputError(f"query vectors have shape {q.shape}, the index holds {self.pool.dim}-dimensional rows")
        if self.metric == "cosine":
            q = normalize_rows(q)
        return exact_search(self._top, q, int(k), self.pool.n, self.larger_is_closer)

    def info(self) -> dict[str, Any]:
        return {"kind": "flat", "metric": self.metric, "rows": self.pool.n, "dim": self.pool.dim, "exact": True,
                "where": str(self.pool.device)}


class DeviceSearch:
    """The :class:`tasksift.index.searcher.Search` of a run on a device: exact searches by torch there; IVF and
    HNSW (asked for by name) by faiss on the CPU."""

    def __init__(self, device: str | torch.device, *, block_rows: int = BLOCK_ROWS) -> None:
        self.device = torch.device(device)
        self.block_rows = int(block_rows)

    def build(self, x: np.ndarray, *, metric: str = "l2", kind: str = "auto", seed: int = 0,
              **settings: Any) -> Any:
        if kind in ("flat", "auto"):
            return DeviceIndex(x, metric, self.device, block_rows=self.block_rows)
        return LocalSearch().build(x, metric=metric, kind=kind, seed=seed, **settings)

    def exact(self, x: np.ndarray) -> DeviceIndex:
        return DeviceIndex(x, "l2", self.device, block_rows=self.block_rows)

    def range_search(self, x: np.ndarray, radius: float, stats: dict[str, int],
                     among: np.ndarray | None = None) -> RangeSearch:
        """Every pool row (or row of ``among``) within Euclidean ``radius``: faiss's CSR ``(lims, squared
        distances, pool rows)``, each query's hits in increasing row order."""
        rows = None if among is None else np.asarray(among, dtype=np.int64)
        pool = DevicePool(np.asarray(x) if rows is None else np.asarray(x)[rows], self.device,
                          block_rows=self.block_rows)
        r2 = float(radius) ** 2

        def chunk(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            parts, offsets = [], []
            q = torch.from_numpy(y).to(self.device)
            qn = (q * q).sum(dim=1, keepdim=True)
            for lo, block, norms in pool.blocks():
                d2 = (qn - 2 * (q @ block.T) + norms).clamp_(min=0)
                hit_q, hit_r = torch.nonzero(d2 < r2, as_tuple=True)  # row-major: by query, then row
                lims = np.zeros(len(y) + 1, dtype=np.int64)
                np.cumsum(np.bincount(hit_q.cpu().numpy(), minlength=len(y)), out=lims[1:])
                parts.append((lims, d2[hit_q, hit_r].cpu().numpy().astype(np.float32), hit_r.cpu().numpy()))
                offsets.append(lo)
            return merge_range(parts, offsets)

        def search(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            y = np.ascontiguousarray(y, dtype=np.float32)
            chunks = [chunk(y[i:i + QUERY_ROWS]) for i in range(0, len(y), QUERY_ROWS)] or [chunk(y)]
            lims = np.concatenate([[0], np.cumsum(np.concatenate([np.diff(c[0]) for c in chunks]))]).astype(np.int64)
            d2 = np.concatenate([c[1] for c in chunks])
            ids = np.concatenate([c[2] for c in chunks]).astype(np.int64)
            stats["compared"] = stats.get("compared", 0) + len(y) * pool.n
            return lims, d2, ids if rows is None else rows[ids]

        return search

    def info(self) -> dict[str, Any]:
        return {"where": str(self.device), "exact": "torch"}

    def close(self) -> None:
        return None
