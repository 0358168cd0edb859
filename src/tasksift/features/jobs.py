"""A featurization job: the texts, the cache to fill, and two ways to compute a shard's rows.

An engine runs the job (:meth:`tasksift.engine.Engine.featurize`); the feature code never asks which engine it
is given. ``compute`` runs in this process (with a loaded model and a progress bar per batch); ``factory`` is
the picklable recipe that builds the same function where the work is sent (a Ray worker), ``None`` when the
model exists only in this process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from rich.progress import Progress

from tasksift.features.cache import CachedFeatures, FeatureCache

#: builds, where it runs, the function that turns a shard's texts into a ``(rows, dim)`` array; it receives the
#: CPU threads it may use. Must be picklable (a module-level class or ``functools.partial``).
FeatureFactory = Callable[[int], Callable[[list[str]], np.ndarray]]


@dataclass
class FeatureJob:
    """Fill ``cache`` with the features of ``texts`` (finished shards reused).

    ``texts`` may be a streamed column (:class:`tasksift.records.column.TextColumn`) that reads its texts from the
    input on demand: whoever runs the job reads it one shard at a time, ``texts[start:stop]``, never whole."""

    cache: FeatureCache
    texts: Sequence[str]
    #: ``(chunk, advance) -> rows`` in this process; ``advance(n)`` moves the progress bar
    compute: Callable[[list[str], Callable[[int], None]], np.ndarray]
    factory: FeatureFactory | None
    desc: str
    dim: int | None = None
    progress: bool | Progress = True

    def run_here(self) -> CachedFeatures:
        """Compute the missing shards in this process."""
        return self.cache.compute(self.texts, self.compute, progress=self.progress, desc=self.desc, dim=self.dim,
                                  reports_progress=True)


class Runner(Protocol):
    """Whatever runs a job: an engine (:mod:`tasksift.engine`)."""

    def featurize(self, job: FeatureJob) -> CachedFeatures: ...


def run_job(job: FeatureJob, runner: Runner | Any | None) -> CachedFeatures:
    """``job`` run by ``runner`` (an engine), or in this process when none is given."""
    return job.run_here() if runner is None else runner.featurize(job)
