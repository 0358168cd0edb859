"""Where the heavy steps run: in this process (``local``, the default) or on a Ray cluster (``ray``).

The logic of a step lives with the step (feature functions in :mod:`tasksift.features`, the per-query merge of
sharded search in :mod:`tasksift.index.sharded`, the selectors); an engine only decides where it runs:

- :meth:`Engine.featurize` fills a :class:`tasksift.features.FeatureCache` with the shards that are not
  finished. Both engines write the same layout and the same completion markers, so a run stopped on one resumes
  on the other without recomputing a finished shard.
- :meth:`Engine.search` is the :class:`tasksift.index.searcher.Search` a selector receives through its context:
  :class:`~tasksift.index.searcher.LocalSearch` here, the sharded search of the Ray engine there.

:func:`get_engine` builds one by name. The local engine imports nothing from Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tasksift.index.searcher import Search
from tasksift.util.errors import InputError

if TYPE_CHECKING:
    from rich.progress import Progress

    from tasksift.features.cache import CachedFeatures, FeatureCache

ENGINES = ("local", "ray")

#: builds, where it runs, the function that turns a shard's texts into a ``(rows, dim)`` array; it receives the
#: CPU threads it may use. Must be picklable for the Ray engine (a module-level class or ``functools.partial``).
FeatureFactory = Callable[[int], Callable[[list[str]], np.ndarray]]


class Engine(Protocol):
    """What :func:`tasksift.select`, ``tasksift embed`` and ``tasksift gradients`` need from an engine."""

    name: str

    def featurize(self, cache: FeatureCache, texts: Sequence[str], factory: FeatureFactory, *,
                  progress: bool | Progress = True, desc: str | None = None,
                  dim: int | None = None) -> CachedFeatures:
        """Features of ``texts`` in ``cache``: finished shards reused, the others computed and stored."""
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
        from tasksift.engine.local import LocalEngine

        return LocalEngine()
    if name == "ray":
        from tasksift.engine.ray import RayEngine

        return RayEngine(address=address, workers=workers)
    raise InputError(f"unknown engine {name!r}", fix=f"use one of {', '.join(ENGINES)}")
