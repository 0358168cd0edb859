"""Featurization on a Ray cluster, and :class:`RayEngine`, the engine that runs it (and hands out :class:`RaySearch`).

The shards of the feature cache that are not finished are handed out to a few actors (:mod:`.placement`: on the
cluster's CPUs, or one actor per GPU); each actor builds the feature function once (loads the model, on its own
GPU when it has one) and computes one shard per call. The driver reads a shard's texts only when it hands the
shard out, and keeps :data:`IN_FLIGHT` shards out per actor (one computing, one waiting), so it never holds
more texts than those. It stores every shard it gets back, with its completion marker, as it arrives
(:meth:`FeatureCache.store`, the same code the local engine uses), so the workers need no shared filesystem and
a run killed at any point loses only the shards in flight: a rerun, on Ray or locally, computes only shards
without a marker.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from typing import Any

import numpy as np

from tasksift.engine.ray.placement import Placement, place, requested_device
from tasksift.engine.ray.search import RaySearch
from tasksift.engine.ray.setup import require_ray, worker_setup
from tasksift.features.cache import CachedFeatures
from tasksift.features.jobs import FeatureFactory, FeatureJob
from tasksift.util.errors import InputError
from tasksift.util.progress import ProgressTask

#: shards handed out to one actor at a time: the one it computes and the next, already sent
IN_FLIGHT = 2


class _ShardWorker:
    """A Ray actor: builds the feature function once (:meth:`start`), then turns one cache shard per call into
    a float32 array."""

    def __init__(self, threads: int) -> None:
        worker_setup(threads)
        self.fn: Any = None
        self.failed: Exception | None = None

    def start(self, factory: FeatureFactory, threads: int, device: str) -> dict[str, Any]:
        """Build the function on ``device`` (``cuda``: the GPU Ray gave this actor); say where it runs."""
        import ray

        try:
            self.fn = factory(threads, device=device) if hasattr(factory, "device") else factory(threads)
        except Exception as exc:
            self.failed = exc  # the shards already queued here fail with the same error
            raise
        return {"pid": os.getpid(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "device": device}

    def compute(self, key: str, start: int, stop: int, texts: list[str]) -> tuple[str, int, int, np.ndarray, float]:
        if self.failed is not None:
            raise self.failed
        t0 = time.perf_counter()
        arr = np.ascontiguousarray(np.asarray(self.fn(texts), dtype=np.float32))
        seconds = time.perf_counter() - t0
        if arr.ndim != 2:
            raise ValueError(f"the feature function returned an array of shape {arr.shape} for shard {key}")
        return key, start, stop, arr, seconds


def _get(ray: Any, ref: Any) -> Any:
    """``ray.get``, with a worker's :class:`InputError` raised as its own one line (not Ray's traceback)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, InputError):
            raise exc.cause from None
        raise


class RayEngine:
    """Featurization and neighbour search on a Ray cluster (see the module docstring).

    ``address``: the cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``; ``None``: ``$RAY_ADDRESS``,
    else a new local cluster). An already connected Ray (``ray.init`` called by the program) is used as it is.
    ``workers``: actors per step (default: the cluster's CPUs divided by ``cpus_per_worker``; for a job on GPUs,
    the cluster's GPUs, which also cap it). After each featurization, :attr:`runs` says where it ran: the
    device, the actors and each actor's GPU ids.
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
        resources = ray.cluster_resources()
        cpus = int(resources.get("CPU", 1))
        self.cluster_cpus = cpus
        self.cluster_gpus = int(resources.get("GPU", 0))
        self.requested_workers = workers
        self.workers = workers or max(1, cpus // cpus_per_worker)
        self.runs: list[dict[str, Any]] = []
        logging.getLogger("ray").setLevel(logging.WARNING)

    # -- featurization ---------------------------------------------------------------------------------------
    def placement(self, device: str, shards: int) -> Placement:
        """The actors for ``shards`` shards asked for on ``device`` (``cpu``, ``cuda`` or ``auto``), on the
        cluster's alive nodes now (:func:`tasksift.engine.ray.placement.place`)."""
        import ray

        nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive", True)]
        return place(device, nodes, shards=shards, workers=self.requested_workers,
                     cpus_per_worker=self.cpus_per_worker, cpu_workers=self.workers, address=self.address)

    def featurize(self, job: FeatureJob) -> CachedFeatures:
        """Compute the job's unfinished shards on the cluster and store them in its cache as they come."""
        if job.factory is None:
            raise InputError("a model loaded in this process cannot be sent to Ray workers",
                             fix="pass the model's name or path (or its ProxySpec) with --engine ray")
        device = requested_device(job.factory)
        self.placement(device, 1)  # refuses a GPU the cluster does not have, before any work
        cache, texts, progress, desc, dim = job.cache, job.texts, job.progress, job.desc, job.dim
        t0 = time.perf_counter()
        cache.prepare()
        todo = cache.unfinished(texts)
        todo_rows = sum(stop - start for start, stop, _ in todo)
        counts = {"shards": 0, "rows": 0, "seconds": 0.0}
        if todo:
            placement = self.placement(device, len(todo))
            label = f"{desc or cache.kind} on Ray ({placement.label})"
            with ProgressTask(progress, label, todo_rows, len(texts) - todo_rows) as bar:
                dim = self._run(job, todo, placement, bar, counts, dim)
        return cache.collect(texts, n_computed=counts["shards"], rows_computed=counts["rows"],
                             compute_seconds=counts["seconds"], seconds=time.perf_counter() - t0, dim=dim)

    def _run(self, job: FeatureJob, todo: list[tuple[int, int, str]], placement: Placement, bar: Any,
             counts: dict[str, Any], dim: int | None) -> int | None:
        """Hand ``todo`` out to the placement's actors, :data:`IN_FLIGHT` shards each from the start (queued
        behind the actor's start), and store each shard as it comes back; the actor whose shard came back gets
        the next one."""
        import ray

        actor_cls = ray.remote(num_cpus=placement.num_cpus, num_gpus=placement.num_gpus)(_ShardWorker)
        actors = [actor_cls.remote(placement.threads) for _ in range(placement.workers)]
        factory = ray.put(job.factory)  # once, whatever the number of actors
        starting = {actor.start.remote(factory, placement.threads, placement.device): i
                    for i, actor in enumerate(actors)}
        queue = deque(todo)
        pending: dict[Any, int] = {}
        run: dict[str, Any] = {"desc": job.desc, "device": placement.device, "workers": len(actors),
                               "started": []}
        self.runs.append(run)
        done = [0] * len(actors)

        def hand_out(i: int) -> None:
            start, stop, key = queue.popleft()
            texts = list(job.texts[start:stop])  # this shard's texts only, read now
            pending[actors[i].compute.remote(key, start, stop, texts)] = i

        try:
            for _ in range(IN_FLIGHT):
                for i in range(len(actors)):
                    if queue:
                        hand_out(i)
            while pending:
                (ref,), _ = ray.wait([*starting, *pending], num_returns=1)
                if ref in starting:
                    run["started"].append({**_get(ray, ref), "actor": starting.pop(ref)})
                    continue
                i = pending.pop(ref)
                key, start, stop, arr, seconds = _get(ray, ref)
                dim = job.cache.store(key, arr, start=start, stop=stop, seconds=seconds, dim=dim)
                done[i] += 1
                counts["shards"] += 1
                counts["rows"] += int(arr.shape[0])
                counts["seconds"] += seconds
                bar.finish_step(int(arr.shape[0]))
                if queue:
                    hand_out(i)
            for ref, i in starting.items():  # every actor has started by now: it computed a shard
                run["started"].append({**_get(ray, ref), "actor": i})
        finally:
            for actor in actors:
                ray.kill(actor)
        for worker in run["started"]:
            worker["shards"] = done[worker["actor"]]
        return dim

    # -- search ----------------------------------------------------------------------------------------------
    def search(self) -> RaySearch:
        """A new search helper; the caller closes it when the selection is done (its shards leave the cluster)."""
        return RaySearch(self.workers, cpus_per_worker=self.cpus_per_worker)

    def info(self) -> dict[str, Any]:
        return {"name": "ray", "address": self.address, "workers": self.workers,
                "cpus_per_worker": self.cpus_per_worker, "cluster_cpus": self.cluster_cpus,
                "cluster_gpus": self.cluster_gpus, "connect_seconds": round(self.connect_seconds, 4),
                "featurized": [{"desc": r["desc"], "device": r["device"], "workers": r["workers"],
                                "gpu_ids": [w["gpu_ids"] for w in r["started"]]} for r in self.runs]}

    def close(self) -> None:
        """Disconnect when this engine connected (a Ray the program started stays up)."""
        if self.connected_here:
            import ray

            ray.shutdown()
            self.connected_here = False
