"""Where the heavy steps run: in this process (``local``, the default) or on a Ray cluster (``ray``).

The logic of a step lives with the step (feature functions in :mod:`tasksift.features`, the per-query merge of
sharded search in :mod:`tasksift.index.sharded`, the selectors); an engine only decides where it runs:

- :meth:`Engine.featurize` runs a :class:`tasksift.features.jobs.FeatureJob`: it fills the job's cache with
  the shards that are not finished. Both engines write the same layout and the same completion markers, so a
  run stopped on one resumes on the other without recomputing a finished shard.
- :meth:`Engine.search` is the :class:`tasksift.index.searcher.Search` a selector receives through its context:
  :class:`~tasksift.index.searcher.LocalSearch` here, the sharded search of the Ray engine there.

:func:`get_engine` builds one by name. The local engine imports nothing from Ray.
"""

from __future__ import annotations

from typing import Any, Protocol

from tasksift.engine.local import LocalEngine
from tasksift.features.cache import CachedFeatures
from tasksift.features.jobs import FeatureJob
from tasksift.index.searcher import Search
from tasksift.util.errors import InputError

ENGINES = ("local", "ray")


class Engine(Protocol):
    """What :func:`tasksift.select`, ``tasksift embed`` and ``tasksift gradients`` need from an engine."""

    name: str

    def featurize(self, job: FeatureJob) -> CachedFeatures:
        """Run ``job``: its finished shards reused, the others computed and stored in its cache."""
        ...

    def search(self) -> Search:
        """The neighbour search selectors receive (:class:`tasksift.engine.ray.RaySearch` on Ray)."""
        ...

    def info(self) -> dict[str, Any]:
        """A JSON-ready description for the manifest."""
        ...

    def close(self) -> None:
        """Release what the engine holds (workers, shards in a cluster's object store)."""
        ...


def get_engine(name: str = "local", *, address: str | None = None, workers: int | None = None) -> Engine:
    """The engine called ``name``: ``local``, or ``ray`` connected to ``address`` (``None``: the cluster named by
    ``$RAY_ADDRESS`` or, failing that, a new local one). ``workers``: Ray workers per step (default: the
    cluster's CPUs). Raises :class:`InputError` for an unknown name, a missing Ray or an unreachable cluster."""
    if name == "local":
        if address is not None:
            raise InputError("--address names a Ray cluster, but the engine is local", fix="add --engine ray")
        return LocalEngine()
    if name == "ray":
        from tasksift.engine.ray import RayEngine  # Ray is an optional dependency: imported only when asked for

        return RayEngine(address=address, workers=workers)
    raise InputError(f"unknown engine {name!r}", fix=f"use one of {', '.join(ENGINES)}")
