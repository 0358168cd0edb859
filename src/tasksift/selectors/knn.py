"""Nearest-neighbour baseline: the pool examples closest to the target set, served round-robin.

Round ``r`` gives every target example, in order, its nearest pool example that is not taken yet, until the
budget is spent. Every target example is served in every round (so one dense target cluster cannot take the
whole budget), and a candidate already taken by another target is skipped rather than taken twice.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tasksift.index import KINDS, METRICS
from tasksift.records import check_vectors
from tasksift.selectors.base import Context, Selection, Selector, as_float_matrix
from tasksift.selectors.registry import register
from tasksift.util.params import Options


def round_robin(neighbours: np.ndarray, budget: int, *, lists_are_complete: bool
                ) -> tuple[list[tuple[int, int, int, int]], bool]:
    """Take candidates round-robin over the rows of ``neighbours`` (row ``t``: target ``t``'s candidates,
    nearest first; ``-1`` marks a missing neighbour).

    Returns ``(picks, done)``: ``picks`` are ``(candidate, target, position in its list, round)`` in the order
    taken. ``done`` is False when a target ran out of listed candidates before the budget was spent and the
    lists are not complete (``lists_are_complete`` False): the caller must then search deeper and call again.
    A target whose complete list is used up simply stops taking.
    """
    m, depth = neighbours.shape
    taken = np.zeros(int(neighbours.max(initial=-1)) + 1, dtype=bool)
    pointer = np.zeros(m, dtype=np.int64)
    picks: list[tuple[int, int, int, int]] = []
    active = list(range(m))
    rnd = 0
    while len(picks) < budget and active:
        rnd += 1
        still_active = []
        for t in active:
            p = pointer[t]
            while p < depth and (neighbours[t, p] < 0 or taken[neighbours[t, p]]):
                p += 1
            pointer[t] = p + 1
            if p >= depth:
                if not lists_are_complete:
                    return picks, False
                continue
            candidate = int(neighbours[t, p])
            taken[candidate] = True
            picks.append((candidate, t, int(p), rnd))
            still_active.append(t)
            if len(picks) == budget:
                break
        active = still_active
    return picks, True


@register
class KNNSelector(Selector):
    """Nearest candidates to the target set, taken round-robin over target examples.

    ``metric``: ``cosine`` (default; embeddings are L2-normalised), ``l2`` or ``ip``. ``index``: the faiss
    index (``auto`` is exact below 200,000 rows, and for a pool that is memory-mapped or in float16, which is
    then searched block by block without a copy: :class:`tasksift.index.blocks.BlockIndex`). Score: the
    similarity to the target that took the example (cosine or ip) or minus its Euclidean distance (l2). Reason:
    that target's row, the similarity or distance, and the round in which it was taken.
    """

    name = "knn"
    needs = "vectors"
    summary = "nearest candidates to the targets, round-robin over targets"
    parameters = {"metric": [Options(*METRICS)], "index": [Options(*KINDS)]}

    def __init__(self, budget: int, *, seed: int = 0, metric: str = "cosine", index: str = "auto") -> None:
        super().__init__(budget, seed=seed)
        self.metric = metric
        self.index = index

    def _select(self, pool: Any, target: Any, ctx: Context) -> Selection:
        x = check_vectors(pool, "pool vectors", half=True)  # a memory map or float16 rows stay as they are
        q = as_float_matrix(target, "target vectors")
        n, m = x.shape[0], q.shape[0]
        index = ctx.search.build(x, metric=self.metric, kind=self.index, seed=self.seed)
        depth = min(n, math.ceil(self.budget / m) + 8)
        while True:
            values, neighbours = index.search(q, depth)
            picks, done = round_robin(neighbours, self.budget, lists_are_complete=depth >= n)
            if done:
                break
            depth = min(n, depth * 2)
        rows = np.array([c for c, _, _, _ in picks], dtype=np.int64)
        raw = np.array([values[t, p] for _, t, p, _ in picks], dtype=np.float64)
        if self.metric == "l2":
            dist = np.sqrt(np.maximum(raw, 0.0))
            scores = -dist
            reasons = [{"target": t, "distance": float(d), "round": r}
                       for (_, t, _, r), d in zip(picks, dist, strict=True)]
        else:
            scores = raw
            reasons = [{"target": t, "similarity": float(s), "round": r}
                       for (_, t, _, r), s in zip(picks, raw, strict=True)]
        selection = Selection(indices=rows, weights=np.ones(len(rows)), scores=scores, reasons=reasons)
        selection.manifest["index"] = index.info()
        selection.manifest["search_depth"] = int(depth)
        return selection
