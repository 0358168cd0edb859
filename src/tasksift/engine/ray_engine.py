"""The Ray engine: featurization with ``ray.data`` over cache shards, neighbour search over pool shards.

Featurization (:meth:`RayEngine.featurize`). The shards of the feature cache that are not finished become the
rows of a ``ray.data`` dataset (one row: a shard's key and its texts). ``map_batches`` runs them through a pool
of actors; each actor builds the feature function once (loads the model) and computes one shard per call. The
driver stores every shard it gets back, with its completion marker, as it arrives (:meth:`FeatureCache.store`,
the same code the local engine uses), so the workers need no shared filesystem and a run killed at any point
loses only the shards in flight: a rerun, on Ray or locally, computes only shards without a marker.

Search (:class:`RaySearch`). The pool's rows are cut into contiguous shards (one per worker) and put in the
object store once; one actor per shard reads its rows from there and builds faiss indexes over them, searches
them exactly in place, or range-searches them. Per-shard answers are merged per query by
:mod:`tasksift.index.sharded`, so exact search gives the same neighbours, in the same order, as one index
over the whole pool. ``ivf`` and ``hnsw`` are built per shard and stay approximate.

Ray is imported only here, and only when a Ray engine is built; without it :func:`require_ray` raises one
line naming the extra to install.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tasksift.util.errors import InputError
from tasksift.index.sharded import exact_search, merge_range, merge_topk, shard_bounds

if TYPE_CHECKING:
    from rich.progress import Progress

    from tasksift.engine import FeatureFactory
    from tasksift.features.cache import CachedFeatures, FeatureCache

_OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def require_ray() -> Any:
    """The ``ray`` module, or an :class:`InputError` naming the extra that installs it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the featurization needs ray[data], not only ray
    except ImportError:
        raise InputError("--engine ray needs Ray, which is not installed",
                         fix="pip install 'tasksift[ray]'") from None
    return ray


def _worker_setup(threads: int) -> None:
    """What every worker does first: stay offline, use its share of the CPUs."""
    for var in _OFFLINE:
        os.environ.setdefault(var, "1")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass


class _ShardWorker:
    """A ``ray.data`` actor: builds the feature function once, then turns one cache shard per call into bytes."""

    def __init__(self, factory: FeatureFactory, threads: int) -> None:
        _worker_setup(threads)
        self.fn = factory(threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"key": [], "start": [], "stop": [], "features": [], "rows": [], "dim": [],
                                     "seconds": []}
        for key, start, stop, texts in zip(batch["key"], batch["start"], batch["stop"], batch["texts"],
                                           strict=True):
            t0 = time.perf_counter()
            arr = np.ascontiguousarray(np.asarray(self.fn([str(t) for t in texts]), dtype=np.float32))
            seconds = time.perf_counter() - t0
            if arr.ndim != 2:
                raise ValueError(f"the feature function returned an array of shape {arr.shape} for shard {key}")
            out["key"].append(str(key))
            out["start"].append(int(start))
            out["stop"].append(int(stop))
            out["features"].append(arr.tobytes())
            out["rows"].append(int(arr.shape[0]))
            out["dim"].append(int(arr.shape[1]))
            out["seconds"].append(seconds)
        return out


class RayEngine:
    """Featurization and neighbour search on a Ray cluster (see the module docstring).

    ``address``: the cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``; ``None``: ``$RAY_ADDRESS``,
    else a new local cluster). An already connected Ray (``ray.init`` called by the program) is used as it is.
    ``workers``: actors per step (default: the cluster's CPUs divided by ``cpus_per_worker``).
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, workers: int | None = None, cpus_per_worker: int = 1
                 ) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise InputError(f"--workers {workers!r} must be a positive whole number")
        if isinstance(cpus_per_worker, bool) or not isinstance(cpus_per_worker, int) or cpus_per_worker < 1:
            raise InputError(f"cpus per worker {cpus_per_worker!r} must be a positive whole number")
        ray = require_ray()
        t0 = time.perf_counter()
        self.connected_here = not ray.is_initialized()
        if self.connected_here:
            kwargs: dict[str, Any] = {"address": address, "log_to_driver": False, "logging_level": logging.WARNING,
                                      "configure_logging": True}
            if address is None and not os.environ.get("RAY_ADDRESS"):
                kwargs["include_dashboard"] = False  # a new local cluster: no dashboard to serve
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InputError(f"cannot connect to the Ray cluster at {address or 'the default address'}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                                 fix="check --address (for example ray://head:10001 or auto) and that the "
                                     "cluster is up (ray status)") from None
        self.connect_seconds = time.perf_counter() - t0
        self.address = address
        self.cpus_per_worker = cpus_per_worker
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.cluster_cpus = cpus
        self.workers = workers or max(1, cpus // cpus_per_worker)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # ours is the rows-based bar of the feature cache
        for name in ("ray.data", "ray"):
            logging.getLogger(name).setLevel(logging.WARNING)

    # -- featurization ---------------------------------------------------------------------------------------
    def featurize(self, cache: FeatureCache, texts: Sequence[str], factory: FeatureFactory, *,
                  progress: bool | Progress = True, desc: str | None = None,
                  dim: int | None = None) -> CachedFeatures:
        """Compute the unfinished shards of ``texts`` on the cluster and store them in ``cache`` as they come."""
        import ray

        from tasksift.features.cache import _ProgressTask

        t0 = time.perf_counter()
        cache.prepare()
        todo = cache.unfinished(texts)
        todo_rows = sum(stop - start for start, stop, _ in todo)
        n_computed = rows_computed = 0
        compute_seconds = 0.0
        if todo:
            items = [{"key": key, "start": start, "stop": stop, "texts": [texts[i] for i in range(start, stop)]}
                     for start, stop, key in todo]
            threads = self.cpus_per_worker
            ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                _ShardWorker, fn_constructor_kwargs={"factory": factory, "threads": threads}, batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=min(self.workers, len(items))), num_cpus=threads,
                batch_format="numpy")
            label = f"{desc or cache.kind} on Ray ({min(self.workers, len(items))} workers)"
            with _ProgressTask(progress, label, todo_rows, len(texts) - todo_rows) as bar:
                for batch in ds.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=0):
                    for i in range(len(batch["key"])):
                        rows, width = int(batch["rows"][i]), int(batch["dim"][i])
                        arr = np.frombuffer(batch["features"][i], dtype=np.float32).reshape(rows, width)
                        dim = cache.store(str(batch["key"][i]), arr, start=int(batch["start"][i]),
                                          stop=int(batch["stop"][i]), seconds=float(batch["seconds"][i]),
                                          dim=dim)
                        n_computed += 1
                        rows_computed += rows
                        compute_seconds += float(batch["seconds"][i])
                        bar.finish_shard(rows)
        return cache.collect(texts, n_computed=n_computed, rows_computed=rows_computed,
                             compute_seconds=compute_seconds, seconds=time.perf_counter() - t0, dim=dim)

    # -- search ----------------------------------------------------------------------------------------------
    def search(self) -> RaySearch:
        """A new search helper; the caller closes it when the selection is done (its shards leave the cluster)."""
        return RaySearch(self.workers, cpus_per_worker=self.cpus_per_worker)

    def info(self) -> dict[str, Any]:
        return {"name": "ray", "address": self.address, "workers": self.workers,
                "cpus_per_worker": self.cpus_per_worker, "cluster_cpus": self.cluster_cpus,
                "connect_seconds": round(self.connect_seconds, 4)}

    def close(self) -> None:
        """Disconnect when this engine connected (a Ray the program started stays up)."""
        if self.connected_here:
            import ray

            ray.shutdown()
            self.connected_here = False


# -- sharded search -----------------------------------------------------------------------------------------
class _ShardSearcher:
    """A Ray actor holding one contiguous shard of the pool (read from the object store without a copy) and the
    indexes built over it. Every call returns its answer and the seconds it computed."""

    def __init__(self, rows: np.ndarray, threads: int) -> None:
        _worker_setup(threads)
        self.x = rows
        self.indexes: dict[str, Any] = {}

    def build(self, name: str, settings: dict[str, Any]) -> tuple[dict[str, Any], float]:
        from tasksift.index import build_index

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
        import faiss

        t0 = time.perf_counter()
        q = np.ascontiguousarray(queries, dtype=np.float32)
        values, rows = exact_search(lambda y, depth: faiss.knn(y, self.x, depth), q, k, len(self.x), False)
        return values, rows, time.perf_counter() - t0

    def range_search(self, queries: np.ndarray, r2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """faiss's brute-force range search (squared L2 below ``r2``) over the shard in place."""
        import faiss

        t0 = time.perf_counter()
        y = np.ascontiguousarray(queries, dtype=np.float32)
        x = self.x
        result = faiss.RangeSearchResult(len(y))
        faiss.range_search_L2sqr(faiss.swig_ptr(y), faiss.swig_ptr(x), x.shape[1], len(y), len(x), float(r2),
                                 result)
        lims = faiss.rev_swig_ptr(result.lims, len(y) + 1).astype(np.int64)
        hits = int(lims[-1])
        d2 = faiss.rev_swig_ptr(result.distances, hits).copy()
        ids = faiss.rev_swig_ptr(result.labels, hits).astype(np.int64)
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
    """The neighbour-search helper the Ray engine gives selectors (``fit(..., search=...)``).

    ``build`` takes :func:`tasksift.index.build_index`'s arguments and returns a :class:`ShardedIndex`;
    ``exact`` is the in-place brute-force squared-L2 search TSDS prefetches with; ``range_search`` has the
    signature of :func:`tasksift.selectors.tsds.selector.pool_range_search`. A pool matrix is placed on the cluster once
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

    def build(self, x: np.ndarray, *, metric: str = "l2", kind: str = "auto", flat_max_rows: int | None = None,
              nlist: int | None = None, nprobe: int = 16, hnsw_m: int = 32, ef_search: int = 128, seed: int = 0
              ) -> ShardedIndex:
        """A faiss index per shard; ``auto`` chooses on the whole pool's size, as the local engine does. An IVF's
        ``nlist`` (given or ``sqrt(N)``) is shared among the shards by their sizes."""
        import ray

        from tasksift.index.search import FLAT_MAX_ROWS, KINDS, METRICS

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

    def range_search(self, x: np.ndarray, radius: float, stats: dict[str, int], among: np.ndarray | None = None
                     ) -> Any:
        """Exact range search (Euclidean ``radius``) of a batch of vectors over the pool ``x``: one brute-force
        pass per shard, in parallel, merged per query in row order. With ``among`` (a few rows: the reference
        density's union of lists) the search runs in process over those rows only."""
        import ray

        if among is not None:
            from tasksift.selectors.tsds.selector import pool_range_search

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
