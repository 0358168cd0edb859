"""The :class:`Search` a selector receives: where its neighbour searches run.

A selector asks ``ctx.search`` for an index over the pool, an exact in-place search or an exact range search;
:class:`LocalSearch` answers in this process with faiss, an engine may answer on a cluster (the Ray engine's
sharded search). Every implementation gives the same neighbours for the same input: the choice changes where
the work runs, never the selection.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from tasksift.index.blocks import BlockIndex, out_of_core
from tasksift.index.exact import InPlaceSearch, RangeSearch, pool_range_search
from tasksift.index.pruned import PrunedRangeSearch
from tasksift.index.search import METRICS, NeighbourIndex, build_index

#: pools with fewer rows are range-searched by brute force: the pruned search's set-up costs more than it saves
PRUNE_MIN_ROWS = 50_000


class SearchIndex(Protocol):
    """A searchable index: ``search(queries, k) -> (values, rows)`` (``-1`` for missing rows) and ``info()``."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def info(self) -> dict[str, Any]: ...


class Search(Protocol):
    """Neighbour search over a pool matrix, wherever it runs."""

    def build(self, x: np.ndarray, *, metric: str = "l2", kind: str = "auto", seed: int = 0,
              **settings: Any) -> SearchIndex:
        """An index over ``x`` (:func:`tasksift.index.build_index`'s kinds and settings)."""
        ...

    def exact(self, x: np.ndarray) -> SearchIndex:
        """Exact Euclidean k-nearest-neighbour search over ``x`` without building an index."""
        ...

    def range_search(self, x: np.ndarray, radius: float, stats: dict[str, int],
                     among: np.ndarray | None = None) -> RangeSearch:
        """Exact range search over ``x`` (or its rows ``among``), see :func:`pool_range_search`."""
        ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class LocalSearch:
    """Every search in this process with faiss. The exact range search over a whole pool of at least
    ``PRUNE_MIN_ROWS`` rows is :class:`tasksift.index.pruned.PrunedRangeSearch` (the same hits as the brute
    force, most of the pool skipped), unless ``prune`` is False.

    A pool that is memory-mapped or stored in float16 (:func:`tasksift.index.blocks.out_of_core`) is never
    copied whole: ``build`` with ``kind`` ``flat`` or ``auto`` answers by an exact search block by block
    (:class:`tasksift.index.blocks.BlockIndex`, the answers of a flat index); IVF and HNSW, asked for by name,
    copy the pool into faiss's memory."""

    prune = True

    def __init__(self, prune: bool = True) -> None:
        self.prune = prune

    def build(self, x: np.ndarray, *, metric: str = "l2", kind: str = "auto", seed: int = 0,
              **settings: Any) -> NeighbourIndex | BlockIndex:
        if kind in ("flat", "auto") and metric in METRICS and isinstance(x, np.ndarray) and out_of_core(x):
            return BlockIndex(x, metric=metric)
        return build_index(x, metric=metric, kind=kind, seed=seed, **settings)

    def exact(self, x: np.ndarray) -> InPlaceSearch:
        return InPlaceSearch(x)

    def range_search(self, x: np.ndarray, radius: float, stats: dict[str, int],
                     among: np.ndarray | None = None) -> RangeSearch:
        if self.prune and among is None and len(x) >= PRUNE_MIN_ROWS:
            return PrunedRangeSearch(x, radius, stats)
        return pool_range_search(x, radius, stats, among=among)

    def info(self) -> dict[str, Any]:
        return {"where": "local"}

    def close(self) -> None:
        return None
