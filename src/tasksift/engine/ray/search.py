"""Neighbour search over a pool placed on a Ray cluster: :class:`RaySearch`, the Ray engine's :class:`Search`.

The pool's rows are cut into contiguous shards (one per worker) and put in the object store once; one actor per
shard reads its rows from there and builds faiss indexes over them, searches them exactly in place, or
range-searches them. Per-shard answers are merged per query by :mod:`tasksift.index.sharded`, so exact search
gives the same neighbours, in the same order, as one index over the whole pool. ``ivf`` and ``hnsw`` are built
per shard and stay approximate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tasksift.engine.ray.setup import worker_setup
from tasksift.index.exact import InPlaceSearch, RangeSearch, pool_range_search, range_search_l2
from tasksift.index.search import FLAT_MAX_ROWS, KINDS, METRICS, build_index
from tasksift.index.sharded import merge_range, merge_topk, shard_bounds
from tasksift.util.errors import InputError


class _ShardSearcher:
    """A Ray actor holding one contiguous shard of the pool (read from the object store without a copy) and the
    indexes built over it. Every call returns its answer and the seconds it computed."""

    def __init__(self, rows: np.ndarray, threads: int) -> None:
        worker_setup(threads)
        self.x = rows
        self.indexes: dict[str, Any] = {}

    def build(self, name: str, settings: dict[str, Any]) -> tuple[dict[str, Any], float]:
        t0 = time.perf_counter()
        index = build_index(self.x, **settings)
        self.indexes[name] = index
        return index.info(), time.perf_counter() - t0

    def search(self, name: str, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
        t0 = time.perf_counter()
        values, rows = self.indexes[name].search(queries, k)
        return values, rows, time.perf_counter() - t0

    def knn(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Exact squared-L2 search by brute force on the shard in place (canonical ties)."""
        t0 = time.perf_counter()
        values, rows = InPlaceSearch(self.x).search(queries, k)
        return values, rows, time.perf_counter() - t0

    def range_search(self, queries: np.ndarray, r2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """faiss's brute-force range search (squared L2 below ``r2``) over the shard in place."""
        t0 = time.perf_counter()
        lims, d2, ids = range_search_l2(queries, self.x, r2)
        return lims, d2, ids, time.perf_counter() - t0

    def drop(self, name: str) -> None:
        self.indexes.pop(name, None)


@dataclass
class _Placed:
    """A pool matrix placed on the cluster: one actor per shard and where each shard starts."""

    actors: list[Any]
    offsets: list[int]
    n: int
    dim: int
    seconds: float


@dataclass
class SearchStats:
    """Where a sharded search spent its time: placing shards, in the workers (the slowest shard per call),
    and in all (wall time seen by the driver, including transfers and the merge)."""

    place_seconds: float = 0.0
    worker_seconds: float = 0.0
    wall_seconds: float = 0.0
    calls: int = 0

    def add(self, wall: float, worker: float) -> None:
        self.calls += 1
        self.wall_seconds += wall
        self.worker_seconds += worker

    def info(self) -> dict[str, Any]:
        return {"place_seconds": round(self.place_seconds, 4), "worker_seconds": round(self.worker_seconds, 4),
                "wall_seconds": round(self.wall_seconds, 4), "calls": self.calls,
                "overhead_seconds": round(self.place_seconds + self.wall_seconds - self.worker_seconds, 4)}


@dataclass
class ShardedIndex:
    """An index over a pool placed on the cluster: the ``search`` and ``info`` of a
    :class:`tasksift.index.NeighbourIndex`, answered by the shards in parallel and merged per query."""

    placed: _Placed
    name: str | None  # None: brute force in place (squared L2), else the name of the per-shard faiss index
    metric: str
    kind: str
    params: dict[str, Any]
    stats: SearchStats
    build_seconds: float = 0.0
    shard_info: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.placed.n

    @property
    def dim(self) -> int:
        return self.placed.dim

    @property
    def larger_is_closer(self) -> bool:
        return self.metric != "l2"

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import ray

        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InputError(f"query vectors have shape {q.shape}, the index holds {self.dim}-dimensional rows")
        k = int(min(k, self.n))
        t0 = time.perf_counter()
        q_ref = ray.put(q)
        if self.name is None:
            futures = [a.knn.remote(q_ref, k) for a in self.placed.actors]
        else:
            futures = [a.search.remote(self.name, q_ref, k) for a in self.placed.actors]
        parts = ray.get(futures)
        values, rows = merge_topk([(v, r) for v, r, _ in parts], self.placed.offsets, k, self.larger_is_closer)
        self.stats.add(time.perf_counter() - t0, max(s for _, _, s in parts))
        return values, rows

    def info(self) -> dict[str, Any]:
        exact = self.kind == "flat"
        return {"kind": self.kind, "metric": self.metric, "rows": self.n, "dim": self.dim,
                "build_seconds": round(self.build_seconds, 4), "exact": exact, **self.params,
                "engine": "ray", "shards": len(self.placed.actors), **({"in_place": True} if self.name is None else {}),
                "search": self.stats.info()}


class RaySearch:
    """The Ray engine's :class:`tasksift.index.searcher.Search`: the selector's searches on the cluster's shards.

    ``build`` takes :func:`tasksift.index.build_index`'s arguments and returns a :class:`ShardedIndex`;
    ``exact`` is the in-place brute-force squared-L2 search; ``range_search`` is
    :func:`tasksift.index.exact.pool_range_search` on the shards. A pool matrix is placed on the cluster once
    (cut into one shard per worker) and reused by every index and search over it until :meth:`close`.
    """

    def __init__(self, workers: int, *, cpus_per_worker: int = 1) -> None:
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.stats = SearchStats()
        self._placed: dict[tuple[int, tuple[int, ...]], tuple[np.ndarray, _Placed]] = {}
        self._names = 0

    def _place(self, x: np.ndarray) -> _Placed:
        import ray

        key = (id(x), tuple(x.shape))
        held = self._placed.get(key)
        if held is not None and held[0] is x:
            return held[1]
        t0 = time.perf_counter()
        original = x
        x = np.ascontiguousarray(x, dtype=np.float32)
        bounds = shard_bounds(len(x), self.workers)
        actor_cls = ray.remote(num_cpus=self.cpus_per_worker)(_ShardSearcher)
        actors = [actor_cls.remote(ray.put(x[start:stop]), self.cpus_per_worker) for start, stop in bounds]
        ray.get([a.__ray_ready__.remote() for a in actors])
        placed = _Placed(actors=actors, offsets=[start for start, _ in bounds], n=len(x), dim=x.shape[1],
                         seconds=time.perf_counter() - t0)
        self.stats.place_seconds += placed.seconds
        self._placed[key] = (original, placed)
        return placed

    def build(self, x: np.ndarray, *, metric: str = "l2", kind: str = "auto", seed: int = 0,
              **settings: Any) -> ShardedIndex:
        """A faiss index per shard; ``auto`` chooses on the whole pool's size, as the local engine does. An IVF's
        ``nlist`` (given or ``sqrt(N)``) is shared among the shards by their sizes. ``settings``: those of
        :func:`tasksift.index.build_index` (``flat_max_rows``, ``nlist``, ``nprobe``, ``hnsw_m``,
        ``ef_search``)."""
        return self._build(x, metric=metric, kind=kind, seed=seed, **settings)

    def _build(self, x: np.ndarray, *, metric: str, kind: str, seed: int, flat_max_rows: int | None = None,
               nlist: int | None = None, nprobe: int = 16, hnsw_m: int = 32, ef_search: int = 128
               ) -> ShardedIndex:
        import ray

        if metric not in METRICS:
            raise InputError(f"unknown metric {metric!r}", fix=f"choose one of {', '.join(METRICS)}")
        if kind not in KINDS:
            raise InputError(f"unknown index kind {kind!r}", fix=f"choose one of {', '.join(KINDS)}")
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] == 0:
            raise InputError(f"cannot index vectors of shape {x.shape}: need a non-empty rows x dimensions matrix")
        placed = self._place(x)
        limit = FLAT_MAX_ROWS if flat_max_rows is None else flat_max_rows
        chosen = kind if kind != "auto" else ("flat" if placed.n <= limit else "ivf")
        self._names += 1
        name = f"index-{self._names}"
        t0 = time.perf_counter()
        cells = int(nlist) if nlist else max(1, round(placed.n ** 0.5))
        futures = []
        for actor, start, stop in zip(placed.actors, placed.offsets, [*placed.offsets[1:], placed.n], strict=True):
            settings: dict[str, Any] = {"metric": metric, "kind": chosen, "seed": seed, "nprobe": nprobe,
                                        "hnsw_m": hnsw_m, "ef_search": ef_search}
            if chosen == "ivf":
                settings["nlist"] = max(1, round(cells * (stop - start) / placed.n))
            futures.append(actor.build.remote(name, settings))
        built = ray.get(futures)
        params: dict[str, Any] = {"exact": chosen == "flat"}
        if chosen == "ivf":
            params.update(nlist=sum(info["nlist"] for info, _ in built), nprobe=built[0][0]["nprobe"])
        elif chosen == "hnsw":
            params.update(M=int(hnsw_m), ef_search=int(ef_search))
        return ShardedIndex(placed=placed, name=name, metric=metric, kind=chosen, params=params, stats=self.stats,
                            build_seconds=time.perf_counter() - t0, shard_info=[info for info, _ in built])

    def exact(self, x: np.ndarray) -> ShardedIndex:
        """Exact squared-L2 search by brute force on the shards in place (no index is built)."""
        return ShardedIndex(placed=self._place(x), name=None, metric="l2", kind="flat", params={"exact": True},
                            stats=self.stats)

    def range_search(self, x: np.ndarray, radius: float, stats: dict[str, int],
                     among: np.ndarray | None = None) -> RangeSearch:
        """Exact range search (Euclidean ``radius``) of a batch of vectors over the pool ``x``: one brute-force
        pass per shard, in parallel, merged per query in row order. With ``among`` (a few rows: the reference
        density's union of lists) the search runs in process over those rows only."""
        import ray

        if among is not None:
            return pool_range_search(x, radius, stats, among=among)
        placed = self._place(x)
        r2 = float(radius) ** 2

        def search(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            t0 = time.perf_counter()
            y = np.ascontiguousarray(y, dtype=np.float32)
            y_ref = ray.put(y)
            parts = ray.get([a.range_search.remote(y_ref, r2) for a in placed.actors])
            merged = merge_range([(lims, d2, ids) for lims, d2, ids, _ in parts], placed.offsets)
            stats["compared"] = stats.get("compared", 0) + len(y) * placed.n
            self.stats.add(time.perf_counter() - t0, max(s for *_, s in parts))
            return merged

        return search

    def info(self) -> dict[str, Any]:
        return {"workers": self.workers, **self.stats.info()}

    def close(self) -> None:
        """Stop the shard actors; their shards leave the object store."""
        import ray

        for _, placed in self._placed.values():
            for actor in placed.actors:
                ray.kill(actor)
        self._placed.clear()
