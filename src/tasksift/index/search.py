"""Nearest-neighbour search over pool vectors, on faiss.

One object, :class:`NeighbourIndex`, hides the choice of faiss index:

- ``flat``: exact search (``IndexFlatL2`` / ``IndexFlatIP``);
- ``ivf``: inverted lists (``IndexIVFFlat``), ``nlist`` cells, ``nprobe`` of them visited per query;
- ``hnsw``: a graph (``IndexHNSWFlat``), ``M`` links per node, ``ef_search`` candidates per query;
- ``auto``: flat below ``flat_max_rows`` rows, IVF above.

Metrics: ``l2`` (Euclidean), ``ip`` (inner product) and ``cosine`` (inner product of L2-normalised copies).
Returned values follow faiss: for ``l2`` they are *squared* Euclidean distances in increasing order, for
``ip`` and ``cosine`` similarities in decreasing order; radii of :meth:`NeighbourIndex.range_search` are on
the same scale (a squared distance for ``l2``, a similarity threshold otherwise). Missing neighbours (when
``k`` exceeds what an approximate index found) come back as index ``-1``. Exact search orders ties by row
(see :mod:`tasksift.index.sharded`).

The choice and its parameters are in :meth:`NeighbourIndex.info`, which goes into the run's manifest.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from tasksift.index.sharded import exact_search
from tasksift.util.errors import InputError

Metric = Literal["l2", "ip", "cosine"]
Kind = Literal["auto", "flat", "ivf", "hnsw"]

METRICS = ("l2", "ip", "cosine")
KINDS = ("auto", "flat", "ivf", "hnsw")
#: below this many rows ``auto`` uses exact search
FLAT_MAX_ROWS = 200_000


#: rows per block of :func:`normalize_rows` and :func:`has_unit_rows` in float64
ROW_BLOCK = 65536


def normalize_rows(x: np.ndarray, *, float64: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """Unit-length rows (float32 copy); zero rows stay zero.

    Norms and quotients are float32, or float64 with ``float64=True`` (``ROW_BLOCK`` rows at a time, each
    rounded to float32 once at the end: TSDS's cosine, whose distances on the sphere are then as exact as
    float32 rows allow). With ``float64``, ``out`` (float32, of ``x``'s shape; for example a memory-mapped
    scratch file for a pool larger than memory) receives the rows instead of a new array."""
    if not float64:
        x = np.array(x, dtype=np.float32, copy=True)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        np.divide(x, norms, out=x, where=norms > 0)
        return x
    out = np.empty(x.shape, dtype=np.float32) if out is None else out
    for lo in range(0, len(x), ROW_BLOCK):
        block = x[lo:lo + ROW_BLOCK].astype(np.float64)
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        out[lo:lo + ROW_BLOCK] = np.divide(block, norms, out=np.zeros_like(block), where=norms > 0)
    return out


def has_unit_rows(x: np.ndarray, atol: float = 1e-4) -> bool:
    """Whether every row's squared norm (float64) is within ``atol`` of 1, checked ``ROW_BLOCK`` rows at a time."""
    return all(np.allclose((x[lo:lo + ROW_BLOCK].astype(np.float64) ** 2).sum(axis=1), 1.0, atol=atol)
               for lo in range(0, len(x), ROW_BLOCK))


@dataclass
class NeighbourIndex:
    """A faiss index over ``n`` pool rows with the metric conventions described in the module docstring."""

    index: Any
    metric: Metric
    kind: str
    n: int
    dim: int
    params: dict[str, Any] = field(default_factory=dict)
    build_seconds: float = 0.0

    @property
    def larger_is_closer(self) -> bool:
        return self.metric != "l2"

    def _prepare(self, queries: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InputError(f"query vectors have shape {q.shape}, the index holds {self.dim}-dimensional rows")
        return normalize_rows(q) if self.metric == "cosine" else q

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest pool rows of every query: ``(values, indices)``, each ``(n_queries, k)``.

        An exact (flat) index answers canonically: ties are ordered, and cut, by increasing row
        (:func:`tasksift.index.sharded.exact_search`), so a sharded search over the same rows gives the same answer.
        """
        k = int(min(k, self.n))
        q = self._prepare(queries)
        if self.kind == "flat":
            return exact_search(self.index.search, q, k, self.n, self.larger_is_closer)
        values, indices = self.index.search(q, k)
        return values, indices

    def range_search(self, queries: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every pool row within ``radius`` of each query, in faiss's CSR layout ``(lims, values, indices)``:
        the hits of query ``i`` are ``indices[lims[i]:lims[i+1]]``, in no particular order."""
        lims, values, indices = self.index.range_search(self._prepare(queries), float(radius))
        return lims, values, indices

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "metric": self.metric, "rows": self.n, "dim": self.dim,
                "build_seconds": round(self.build_seconds, 4), **self.params}


def build_index(vectors: np.ndarray, *, metric: Metric = "l2", kind: Kind = "auto",
                flat_max_rows: int = FLAT_MAX_ROWS, nlist: int | None = None, nprobe: int = 16,
                hnsw_m: int = 32, ef_search: int = 128, seed: int = 0) -> NeighbourIndex:
    """Build a :class:`NeighbourIndex` over ``vectors`` (rows are pool examples)."""
    import faiss

    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}", fix=f"choose one of {', '.join(METRICS)}")
    if kind not in KINDS:
        raise InputError(f"unknown index kind {kind!r}", fix=f"choose one of {', '.join(KINDS)}")
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if x.ndim != 2 or x.shape[0] == 0:
        raise InputError(f"cannot index vectors of shape {x.shape}: need a non-empty rows x dimensions matrix")
    if metric == "cosine":
        x = normalize_rows(x)
    n, dim = x.shape
    chosen = kind if kind != "auto" else ("flat" if n <= flat_max_rows else "ivf")
    faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    t0 = time.perf_counter()
    params: dict[str, Any] = {}
    if chosen == "flat":
        index = faiss.IndexFlatL2(dim) if metric == "l2" else faiss.IndexFlatIP(dim)
        index.add(x)
        params["exact"] = True
    elif chosen == "ivf":
        cells = int(nlist) if nlist else max(1, int(round(math.sqrt(n))))
        cells = min(cells, n)
        quantizer = faiss.IndexFlatL2(dim) if metric == "l2" else faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, cells, faiss_metric)
        index.cp.seed = int(seed)
        train_rows = min(n, 256 * cells)
        sample = x if train_rows == n else x[np.random.default_rng(seed).choice(n, train_rows, replace=False)]
        index.train(sample)
        index.add(x)
        index.nprobe = min(int(nprobe), cells)
        params.update(exact=False, nlist=cells, nprobe=index.nprobe, train_rows=train_rows)
    else:
        index = faiss.IndexHNSWFlat(dim, int(hnsw_m), faiss_metric)
        index.hnsw.efSearch = int(ef_search)
        index.add(x)
        params.update(exact=False, M=int(hnsw_m), ef_search=int(ef_search))
    return NeighbourIndex(index=index, metric=metric, kind=chosen, n=n, dim=dim, params=params,
                          build_seconds=time.perf_counter() - t0)
