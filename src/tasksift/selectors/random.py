"""Uniform random selection without replacement: the baseline every method must beat."""

from __future__ import annotations

from typing import Any

import numpy as np

from tasksift.selectors.base import Context, Selection, Selector, sequence_len
from tasksift.selectors.registry import register


@register
class RandomSelector(Selector):
    """Draw ``budget`` distinct pool examples uniformly at random (``numpy.random.default_rng(seed)``).

    Rank is the draw order; every weight is 1 and every score is ``budget / n`` (the chance of being drawn).
    """

    name = "random"
    needs = "count"
    summary = "uniform random sample without replacement"

    def __init__(self, budget: int, *, seed: int = 0) -> None:
        super().__init__(budget, seed=seed)

    def _select(self, pool: Any, target: Any, ctx: Context) -> Selection:
        n = sequence_len(pool)
        rng = np.random.default_rng(self.seed)
        rows = rng.choice(n, size=self.budget, replace=False)
        return Selection(
            indices=rows,
            weights=np.ones(len(rows)),
            scores=np.full(len(rows), self.budget / n),
            reasons=[{"draw": i + 1} for i in range(len(rows))],
        )
