"""LESS: the pool examples whose gradients point where the target's do (Xia et al., 2024; docs/methods.md, LESS).

Features are per-example gradient features (:mod:`tasksift.features.gradients`): LoRA gradients of a warmed-up
proxy, randomly projected, Adam-preconditioned for the pool and plain for the targets. The selector reads them
as vectors:

- ``cos(x, q)`` between every pool row and every target row;
- a task (a target domain) scores a pool row by its largest cosine to that task's targets;
- the score is the mean of the task scores (with one task, just the largest cosine);
- the ``budget`` highest scores are taken (ties: the earlier pool row first).

With ``per_task=True`` (several tasks; not the paper's rule, which scores for one target at a time) the budget is
split across the tasks instead: each task ranks the pool by its own task score, and the tasks take their best
row not taken yet in turn (in the order the tasks first appear) until the budget is spent, so every task gets
``budget // T`` rows and the first ``budget % T`` tasks one more. The mean over tasks favours rows a little like
every task; the split asks for a share of each.

Our choices where the paper is silent: a row of zeros has cosine 0 to everything; ``domains`` (one label per
target row) names the tasks, in the order they first appear; the cosines are computed in blocks of pool rows, so
the ``N x M`` matrix never exists at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tasksift.records import domain_index
from tasksift.selectors.base import Context, Selection, Selector, as_float_matrix
from tasksift.selectors.knn import round_robin
from tasksift.selectors.registry import register
from tasksift.util.errors import InputError
from tasksift.util.params import Boolean, Items

#: pool rows per block of the cosine computation
_BLOCK_ROWS = 8192


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (rows of zeros stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def less_scores(pool: np.ndarray, target: np.ndarray, task_of: np.ndarray, n_tasks: int,
                block_rows: int = _BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pool row: the LESS score, the best target row and its cosine, and the per-task maxima ``(N, T)``.

    Returns ``(scores, best_target, task_max)``; the best target's cosine is ``task_max`` of its task.
    """
    q = unit_rows(np.asarray(target, dtype=np.float32))
    n = pool.shape[0]
    task_max = np.empty((n, n_tasks), dtype=np.float64)
    best = np.empty(n, dtype=np.int64)
    members = [np.flatnonzero(task_of == t) for t in range(n_tasks)]
    for start in range(0, n, block_rows):
        x = unit_rows(np.asarray(pool[start:start + block_rows], dtype=np.float32))
        sims = x @ q.T
        for t, cols in enumerate(members):
            task_max[start:start + len(x), t] = sims[:, cols].max(axis=1)
        best[start:start + len(x)] = sims.argmax(axis=1)
    return task_max.mean(axis=1), best, task_max


@register
class LESSSelector(Selector):
    """LESS: cosine of gradient features to the targets, max over a task's targets, mean over tasks, top k.

    ``domains``: the task (target domain) of each target row, or ``None`` for one task. ``per_task``: split
    the budget evenly across the tasks, each taking its best remaining rows by its own task score, in turn.
    Score: the LESS score (with ``per_task``, the score of the task that took the row). Reason: the most similar
    target row and its cosine, with several tasks each task's maximum, and with ``per_task`` the task that took
    the row and the round.
    """

    name = "less"
    needs = "vectors"
    features = "gradients"
    #: LESS's recipe: a short Adam warm-up on a sample of the pool, pool rows preconditioned by its moments
    #: with LESS's own rule (see :data:`tasksift.features.gradients.PRECONDITION_RULES`), targets plain
    feature_defaults = {"warmup_steps": 8, "precondition": "less"}
    summary = "gradient-feature cosine to the targets (max per task, mean over tasks), top k"
    parameters = {"domains": [Items(), None], "per_task": [Boolean()]}

    def __init__(self, budget: int, *, seed: int = 0, domains: Sequence[Any] | str | None = None,
                 per_task: bool = False) -> None:
        super().__init__(budget, seed=seed)
        self.domains = domains
        self.per_task = per_task

    def reads_seed(self) -> bool:
        """The top scores do not depend on the seed (the features' own seed, of the warm-up and the projection,
        is a feature setting)."""
        return False

    def _select(self, pool: Any, target: Any, ctx: Context) -> Selection:
        x = as_float_matrix(pool, "pool gradient features")
        q = as_float_matrix(target, "target gradient features")
        if x.shape[1] != q.shape[1]:
            raise InputError(f"less: pool features have {x.shape[1]} dimensions, target features {q.shape[1]}",
                             fix="compute both with the same proxy model and projection")
        names, task_of = domain_index(self.domains, q.shape[0], who="less")
        scores, best, task_max = less_scores(x, q, task_of, len(names))
        taken_by: list[tuple[int, int]] = []
        if self.per_task and len(names) > 1:
            # every task's rows, best first (ties: the earlier row), served in turn: a complete list per task
            lists = np.stack([np.lexsort((np.arange(len(scores)), -task_max[:, t])) for t in range(len(names))])
            picks, _ = round_robin(lists, self.budget, lists_are_complete=True)
            order = np.array([p[0] for p in picks], dtype=np.int64)
            taken_by = [(p[1], p[3]) for p in picks]
            picked_scores = task_max[order, [t for t, _ in taken_by]]
        else:
            order = np.lexsort((np.arange(len(scores)), -scores))[: self.budget]
            picked_scores = scores[order]
        reasons = []
        for i, row in enumerate(order):
            target_row = int(best[row])
            reason: dict[str, Any] = {"target": target_row, "cosine": float(task_max[row, task_of[target_row]])}
            if len(names) > 1:
                reason["tasks"] = {name: float(task_max[row, t]) for t, name in enumerate(names)}
            if taken_by:
                reason["taken_by"] = names[taken_by[i][0]]
                reason["round"] = taken_by[i][1]
            reasons.append(reason)
        selection = Selection(indices=order, weights=np.ones(len(order)), scores=picked_scores, reasons=reasons)
        selection.manifest["tasks"] = {name: int((task_of == t).sum()) for t, name in enumerate(names)}
        if taken_by:
            selection.manifest["taken_per_task"] = {name: sum(1 for t, _ in taken_by if t == i)
                                                    for i, name in enumerate(names)}
        self.scores_all_ = scores
        return selection
