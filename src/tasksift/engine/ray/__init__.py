"""The Ray engine: featurization by actors over cache shards, neighbour search over pool shards.

- :mod:`~tasksift.engine.ray.featurize`: :class:`RayEngine`, which connects to the cluster and computes the
  unfinished shards of a feature cache on it, on the cluster's CPUs or one actor per GPU
  (:mod:`~tasksift.engine.ray.placement`);
- :mod:`~tasksift.engine.ray.search`: :class:`RaySearch`, the :class:`tasksift.index.searcher.Search` a
  selector receives from the Ray engine, answered by one actor per shard of the pool;
- :mod:`~tasksift.engine.ray.setup`: Ray itself, and what every worker does first.

Ray is imported only in these modules' functions, and only when a Ray engine is built; without it
:func:`require_ray` raises one line naming the extra to install.
"""

from tasksift.engine.ray.featurize import RayEngine
from tasksift.engine.ray.search import RaySearch, SearchStats, ShardedIndex
from tasksift.engine.ray.setup import require_ray

__all__ = ["RayEngine", "RaySearch", "SearchStats", "ShardedIndex", "require_ray"]
