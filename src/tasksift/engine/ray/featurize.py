"""Featurization on a Ray cluster, and :class:`RayEngine`, the engine that runs it (and hands out :class:`RaySearch`).

The shards of the feature cache that are not finished become the rows of a ``ray.data`` dataset (one row: a
shard's key and its texts). ``map_batches`` runs them through a pool of actors; each actor builds the feature
function once (loads the model) and computes one shard per call. The driver stores every shard it gets back,
with its completion marker, as it arrives (:meth:`FeatureCache.store`, the same code the local engine uses), so
the workers need no shared filesystem and a run killed at any point loses only the shards in flight: a rerun, on
Ray or locally, computes only shards without a marker.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from tasksift.engine.ray.search import RaySearch
from tasksift.engine.ray.setup import require_ray, worker_setup
from tasksift.features.cache import CachedFeatures
from tasksift.features.jobs import FeatureFactory, FeatureJob
from tasksift.util.errors import InputError
from tasksift.util.progress import ProgressTask


class _ShardWorker:
    """A ``ray.data`` actor: builds the feature function once, then turns one cache shard per call into bytes."""

    def __init__(self, factory: FeatureFactory, threads: int) -> None:
        worker_setup(threads)
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
    def featurize(self, job: FeatureJob) -> CachedFeatures:
        """Compute the job's unfinished shards on the cluster and store them in its cache as they come."""
        import ray

        if job.factory is None:
            raise InputError("a model loaded in this process cannot be sent to Ray workers",
                             fix="pass the model's name or path (or its ProxySpec) with --engine ray")
        cache, texts, factory, progress, desc, dim = job.cache, job.texts, job.factory, job.progress, job.desc, \
            job.dim
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
            with ProgressTask(progress, label, todo_rows, len(texts) - todo_rows) as bar:
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
                        bar.finish_step(rows)
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
