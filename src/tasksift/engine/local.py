"""The local engine: every step in this process, as tasksift always ran (no Ray import)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tasksift.index.searcher import LocalSearch

if TYPE_CHECKING:
    from rich.progress import Progress

    from tasksift.engine import FeatureFactory
    from tasksift.features.cache import CachedFeatures, FeatureCache


class LocalEngine:
    """Featurizes with :meth:`FeatureCache.compute` in this process; selectors search in process."""

    name = "local"

    def featurize(self, cache: FeatureCache, texts: Sequence[str], factory: FeatureFactory, *,
                  progress: bool | Progress = True, desc: str | None = None,
                  dim: int | None = None) -> CachedFeatures:
        from tasksift.features.embed import default_threads

        built: dict[str, Callable[[list[str]], np.ndarray]] = {}

        def fn(chunk: list[str]) -> np.ndarray:
            if "fn" not in built:  # built only when a shard is missing: a fully cached run loads no model
                built["fn"] = factory(default_threads())
            return built["fn"](chunk)

        return cache.compute(texts, fn, progress=progress, desc=desc, dim=dim)

    def search(self) -> LocalSearch:
        return LocalSearch()

    def info(self) -> dict[str, Any]:
        return {"name": "local"}

    def close(self) -> None:
        return None
