"""The local engine: every step in this process (no Ray import)."""

from __future__ import annotations

from typing import Any

from tasksift.features.cache import CachedFeatures
from tasksift.features.jobs import FeatureJob
from tasksift.index.searcher import LocalSearch


class LocalEngine:
    """Featurizes and searches in this process."""

    name = "local"

    def featurize(self, job: FeatureJob) -> CachedFeatures:
        """Compute the job's missing shards in this process."""
        return job.run_here()

    def search(self) -> LocalSearch:
        return LocalSearch()

    def info(self) -> dict[str, Any]:
        return {"name": "local"}

    def close(self) -> None:
        return None
