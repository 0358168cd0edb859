"""The retriever's training-time samplers (OPERA's dynamic pruning, InfoBatch), their schedules, and the pairs
OPERA's static pruning keeps (Fang, Zhang, Ma et al., COLM 2026).

The training data are positive (query, document) pairs. A pair's score is the cosine of its query and document
under the base model or, once the pair has been trained on, the live in-batch cosine of the training forward
pass. A query's score is the mean of its positives' scores.

- :class:`OperaDynamicSampler` (``opera-dp``): nothing is removed; a sampler for the retriever's training loop.
  Every pass holds exactly ``n0 = n (1 - r0) / x0 + r0 n`` queries (``n`` queries; ``r0 = 0.25``, ``x0 = 2``:
  ``n0 = 0.625 n``). The sampling strength ``x`` follows a cosine schedule from 2 to 5 over training and the cut
  ``r = (x n0 - n) / (n (x - 1))`` keeps the expected pass size at ``n0``: the queries above the ``(1 - r)``
  quantile of query scores always come, and the pass is filled to ``n0`` with queries drawn uniformly without
  replacement from the rest, so each of them comes with probability ``(n0 - a) / (n - a)`` (``a`` queries above
  the cut), which is ``1 / x`` up to the rounding of ``a = r n``. Each visit draws one positive of the query,
  with weight 5 if its score is above the ``(1 - c)`` quantile of all pair scores, else 1; ``c`` follows a
  cosine schedule from 0.25 to 0.5. Thresholds refresh at the start of every pass; scores change only for the
  pairs the loop reports through :meth:`observe`.
- :class:`InfoBatchSampler` (``infobatch``, Qin et al. 2024): the online baseline. Each pass randomly drops 25%
  of the queries whose last loss is below the mean loss, multiplies the loss of the kept below-mean queries by
  ``1 / (1 - 0.25)``, and stops pruning for the passes that start in the last 12.5% of training.
- :class:`QueryPassSampler`: the base of both, every query once per pass with one uniformly drawn positive.

Schedules run over passes: pass ``p`` of ``P`` (``P`` the passes a run of ``total_steps`` steps makes) is at
progress ``t = p / (P - 1)``, and ``cosine_schedule(start, end, t) = end + (start - end) (1 + cos(pi t)) / 2``,
so the first pass is at the start value and the last at the end value.

- :func:`static_pruning`: the pairs OPERA's static pruning keeps inside training, ranked by :func:`static_keep`
  as :class:`tasksift.selectors.opera.selector.OperaStaticSelector` ranks them, with the same summary.

The samplers implement the interface of :class:`tasksift.train.common.Sampler` (``batches``,
``batches_per_pass``, ``observe``, plus ``loss_weights`` and ``signal``) without importing torch, so the
selector registry, which shares these helpers, stays light. Everything here is numpy over arrays; models and
files stay with the caller.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from tasksift.util.errors import InputError

#: which pairs static pruning keeps: the highest base cosines, the lowest, or a uniform random draw
MODES = ("easy", "hard", "random")
#: OPERA's defaults (docs/methods.md): initial cut, initial and final sampling strength, document-level quantile
#: schedule and the weight of a positive above it
R0, X0, X1, C0, C1, DOC_WEIGHT = 0.25, 2.0, 5.0, 0.25, 0.5, 5.0
#: InfoBatch's defaults as OPERA compares with it: prune ratio and the share of training pruned at all
INFOBATCH_RATIO, INFOBATCH_DELTA = 0.25, 0.875


# ---------------------------------------------------------------------------------------------------------
# The formulas, as small functions
# ---------------------------------------------------------------------------------------------------------
def cosine_schedule(start: float, end: float, t: float) -> float:
    """``start`` at ``t = 0``, ``end`` at ``t = 1``, along half a cosine; ``t`` is clipped to [0, 1]."""
    t = min(max(float(t), 0.0), 1.0)
    return end + (start - end) * (1.0 + math.cos(math.pi * t)) / 2.0


def pass_size(n: int, r0: float = R0, x0: float = X0) -> int:
    """``n0 = n (1 - r0) / x0 + r0 n`` rounded to a whole number of queries (at least 1)."""
    return max(1, int(round(n * (1.0 - r0) / x0 + r0 * n)))


def cut_share(x: float, n0: int, n: int) -> float:
    """``r = (x n0 - n) / (n (x - 1))``: the share of queries always in that keeps the expected pass size at n0."""
    if x <= 1.0:
        raise ValueError(f"the sampling strength x={x} must be above 1")
    return min(max((x * n0 - n) / (n * (x - 1.0)), 0.0), 1.0)


def query_scores(pair_scores: np.ndarray, pair_query: np.ndarray, n_queries: int) -> np.ndarray:
    """Each query's score: the mean of its positives' scores."""
    sums = np.bincount(pair_query, weights=pair_scores, minlength=n_queries)
    counts = np.bincount(pair_query, minlength=n_queries)
    return sums / np.maximum(counts, 1)


def above_quantile(scores: np.ndarray, share: float) -> np.ndarray:
    """Mask of the scores strictly above the ``(1 - share)`` quantile (numpy's linear interpolation)."""
    if share <= 0.0:
        return np.zeros(len(scores), dtype=bool)
    if share >= 1.0:
        return np.ones(len(scores), dtype=bool)
    return scores > np.quantile(scores, 1.0 - share)


def group_queries(query_keys: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """``(pair_query, keys)``: each pair's query number (in order of first appearance) and the distinct keys."""
    index: dict[Any, int] = {}
    out = np.empty(len(query_keys), dtype=np.int64)
    for i, key in enumerate(query_keys):
        out[i] = index.setdefault(key, len(index))
    return out, list(index)


def static_keep(scores: np.ndarray, k: int, mode: str, seed: int = 0) -> np.ndarray:
    """Positions of the ``k`` kept pairs in rank order: highest scores (``easy``), lowest (``hard``) or a uniform
    random draw (``random``, in draw order). Ties keep the lower position first."""
    scores = np.asarray(scores, dtype=np.float64)
    if mode == "easy":
        return np.argsort(-scores, kind="stable")[:k]
    if mode == "hard":
        return np.argsort(scores, kind="stable")[:k]
    if mode == "random":
        return np.random.default_rng(seed).choice(len(scores), size=k, replace=False)
    raise InputError(f"unknown OPERA static pruning mode {mode!r}", fix=f"use one of {', '.join(MODES)}")


def pair_cosines(query_vectors: np.ndarray, doc_vectors: np.ndarray) -> np.ndarray:
    """Each pair's cosine, ``query_vectors[i]`` against ``doc_vectors[i]`` (rows are normalised here, in float32,
    and multiplied in float64)."""
    q = np.asarray(query_vectors, dtype=np.float32)
    d = np.asarray(doc_vectors, dtype=np.float32)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return np.sum(q.astype(np.float64) * d.astype(np.float64), axis=1)


def kept_positives(pair_query: np.ndarray, n_queries: int, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query: how many of its positives are in ``kept``, and how many it has."""
    return (np.bincount(pair_query[kept], minlength=n_queries), np.bincount(pair_query, minlength=n_queries))


def static_summary(scores: np.ndarray, kept: np.ndarray, mode: str, survivors: np.ndarray) -> dict[str, Any]:
    """What static pruning did: pairs and queries kept, queries that lost all their positives (``survivors[q]``
    is query ``q``'s positives kept), and the last cosine kept (none for ``random``)."""
    dropped = int(np.sum(survivors == 0))
    # the last cosine kept: the lowest for easy, the highest for hard (random has no cut)
    cut = {"easy": np.min, "hard": np.max}.get(mode)
    return {
        "mode": mode, "pairs": len(scores), "kept_pairs": int(len(kept)),
        "kept_pct": float(len(kept) / len(scores)), "queries": len(survivors),
        "queries_kept": len(survivors) - dropped, "queries_dropped": dropped,
        "cosine_cut": float(cut(scores[kept])) if cut is not None else None,
    }


def static_pruning(scores: np.ndarray, pair_query: np.ndarray, kept_pct: float, *, seed: int,
                   mode: str = "easy") -> tuple[np.ndarray, dict[str, Any]]:
    """``(rows, info)``: the positions of the pairs static pruning keeps of a run's pairs, ascending, and
    :func:`static_summary` under ``"kind": "static"``.

    ``scores[i]`` is pair ``i``'s base cosine (:func:`pair_cosines`), ``pair_query[i]`` its query number (0..n-1,
    in order of first appearance); ``round(kept_pct * pairs)`` pairs are kept, at least one.
    """
    n = len(scores)
    budget = max(1, int(round(kept_pct * n)))
    if budget > n:
        raise InputError(f"budget {budget} is larger than the pool ({n} examples)", fix=f"ask for at most {n}")
    kept = static_keep(scores, budget, mode, seed)
    survivors, _ = kept_positives(pair_query, int(np.max(pair_query)) + 1, kept)
    return np.sort(kept), {"kind": "static", **static_summary(scores, kept, mode, survivors)}


# ---------------------------------------------------------------------------------------------------------
# Training-time samplers (the retriever's loop calls batches / observe / loss_weights)
# ---------------------------------------------------------------------------------------------------------
class QueryPassSampler:
    """Standard finetuning over queries: every query once per pass (shuffled), one positive drawn per visit.

    ``pair_query[i]`` is pair ``i``'s query number; batches are arrays of pair positions, ``batch_size`` queries
    each. Subclasses choose which queries a pass visits (:meth:`pass_queries`) and how a visit's positive is
    drawn (:meth:`positive_weights`).
    """

    #: what ``observe`` receives from the retriever: each pair's live positive cosine, or its loss
    signal: ClassVar[str] = "cosine"

    def __init__(self, pair_query: Sequence[int] | np.ndarray, batch_size: int, *, seed: int = 0) -> None:
        self.pair_query = np.asarray(pair_query, dtype=np.int64).reshape(-1)
        if len(self.pair_query) == 0:
            raise InputError("there are no training pairs", fix="give the retriever at least one positive pair")
        if batch_size <= 0:
            raise InputError(f"batch size {batch_size} must be positive")
        if self.pair_query.min() < 0:
            raise ValueError("query numbers must be non-negative")
        self.n_queries = int(self.pair_query.max()) + 1
        self.batch_size = int(batch_size)
        self.rng = np.random.default_rng(seed)
        order = np.argsort(self.pair_query, kind="stable")
        starts = np.searchsorted(self.pair_query[order], np.arange(self.n_queries + 1))
        #: positives of each query (pair positions)
        self.positives = [order[starts[q]:starts[q + 1]] for q in range(self.n_queries)]
        if any(len(p) == 0 for p in self.positives):
            raise ValueError("query numbers must run 0..n-1 with at least one pair each")
        #: per pass: its number, how many queries it visits, and the schedule values it used
        self.history: list[dict[str, float]] = []

    def pass_length(self) -> int:
        """Queries a pass visits (all of them here)."""
        return self.n_queries

    def batches_per_pass(self) -> int:
        return math.ceil(self.pass_length() / self.batch_size)

    def pass_queries(self, pass_index: int) -> np.ndarray:
        """The queries pass ``pass_index`` visits, in visiting order."""
        self.history.append({"pass": pass_index, "queries": self.n_queries})
        return self.rng.permutation(self.n_queries)

    def positive_weights(self, query: int) -> np.ndarray | None:
        """Draw weights of the query's positives (``None``: uniform)."""
        return None

    def draw_positive(self, query: int) -> int:
        pos = self.positives[query]
        if len(pos) == 1:
            return int(pos[0])
        w = self.positive_weights(query)
        p = None if w is None else w / w.sum()
        return int(self.rng.choice(pos, p=p))

    def batches(self, pass_index: int) -> Iterator[np.ndarray]:
        queries = self.pass_queries(pass_index)
        for start in range(0, len(queries), self.batch_size):
            # drawn when the batch is asked for, so a visit sees the scores of every step before it
            yield np.array([self.draw_positive(int(q)) for q in queries[start:start + self.batch_size]],
                           dtype=np.int64)

    def observe(self, indices: np.ndarray, signal: np.ndarray) -> None:
        """The batch's live signal (ignored by standard finetuning)."""

    def loss_weights(self, indices: np.ndarray) -> np.ndarray | None:
        """Per-pair loss multipliers of a batch (``None``: all 1)."""
        return None


def planned_passes(total_steps: int, batches_per_pass: int) -> int:
    """Passes a run of ``total_steps`` steps starts (the last one may stop part way)."""
    return max(1, math.ceil(max(int(total_steps), 1) / max(int(batches_per_pass), 1)))


def pass_progress(pass_index: int, n_passes: int) -> float:
    """Where pass ``pass_index`` stands in training, 0 for the first pass and 1 for the last."""
    return 0.0 if n_passes <= 1 else min(pass_index / (n_passes - 1), 1.0)


class OperaDynamicSampler(QueryPassSampler):
    """OPERA dynamic pruning (see the module docstring for the schedules).

    ``base_scores[i]`` is pair ``i``'s base-model cosine; :meth:`observe` overwrites the scores of the pairs of a
    batch with their live in-batch positive cosines. ``total_steps`` is the run's step budget (it places every
    pass on the schedules).
    """

    summary: ClassVar[str] = ("OPERA dynamic pruning: each pass trains on the queries and positives whose live "
                              "scores the schedules keep")

    def __init__(self, pair_query: Sequence[int] | np.ndarray, base_scores: Sequence[float] | np.ndarray,
                 batch_size: int, total_steps: int, *, seed: int = 0, r0: float = R0, x_start: float = X0,
                 x_end: float = X1, c_start: float = C0, c_end: float = C1, doc_weight: float = DOC_WEIGHT) -> None:
        super().__init__(pair_query, batch_size, seed=seed)
        self.scores = np.asarray(base_scores, dtype=np.float64).reshape(-1).copy()
        if len(self.scores) != len(self.pair_query):
            raise ValueError(f"{len(self.pair_query)} pairs but {len(self.scores)} base scores")
        if not np.all(np.isfinite(self.scores)):
            raise InputError("the base pair scores hold NaN or inf", fix="check the base model's embeddings")
        if x_start <= 1.0 or x_end <= 1.0:
            raise InputError("OPERA's sampling strengths must be above 1")
        self.r0, self.x_start, self.x_end = r0, x_start, x_end
        self.c_start, self.c_end, self.doc_weight = c_start, c_end, doc_weight
        self.n0 = min(pass_size(self.n_queries, r0, x_start), self.n_queries)
        self.total_steps = int(total_steps)
        self.n_passes = planned_passes(self.total_steps, self.batches_per_pass())
        self._doc_cut = np.inf

    def pass_length(self) -> int:
        return self.n0

    def schedule(self, pass_index: int) -> tuple[float, float, float]:
        """``(x, r, c)`` of pass ``pass_index``."""
        t = pass_progress(pass_index, self.n_passes)
        x = cosine_schedule(self.x_start, self.x_end, t)
        c = cosine_schedule(self.c_start, self.c_end, t)
        return x, cut_share(x, self.n0, self.n_queries), c

    def pass_queries(self, pass_index: int) -> np.ndarray:
        x, r, c = self.schedule(pass_index)
        qs = query_scores(self.scores, self.pair_query, self.n_queries)
        always = np.flatnonzero(above_quantile(qs, r))
        if len(always) > self.n0:  # ties at the cut can only shrink it; never exceed the pass size
            always = always[np.argsort(-qs[always], kind="stable")[:self.n0]]
        rest = np.setdiff1d(np.arange(self.n_queries), always, assume_unique=True)
        drawn = self.rng.choice(rest, size=self.n0 - len(always), replace=False)
        self._doc_cut = float(np.quantile(self.scores, 1.0 - c)) if c < 1.0 else -np.inf
        self.history.append({"pass": pass_index, "queries": self.n0, "x": x, "r": r, "c": c,
                             "always_in": len(always), "below_cut_probability": len(drawn) / max(len(rest), 1),
                             "doc_cut": self._doc_cut})
        chosen = np.concatenate([always, drawn])
        return chosen[self.rng.permutation(len(chosen))]

    def positive_weights(self, query: int) -> np.ndarray:
        pos = self.positives[query]
        return np.where(self.scores[pos] > self._doc_cut, self.doc_weight, 1.0)

    def observe(self, indices: np.ndarray, signal: np.ndarray) -> None:
        self.scores[np.asarray(indices, dtype=np.int64)] = np.asarray(signal, dtype=np.float64)


class InfoBatchSampler(QueryPassSampler):
    """InfoBatch over queries: prune a random ``ratio`` of the below-mean-loss queries each pass, rescale the
    kept ones' loss by ``1 / (1 - ratio)``, and prune nothing in passes that start after ``delta`` of training.

    Scores are each query's last loss (every query starts at the same score, so the first pass prunes nothing).
    """

    signal: ClassVar[str] = "loss"
    summary: ClassVar[str] = "InfoBatch: prune a random share of the below-mean-loss queries per pass, rescale the rest"

    def __init__(self, pair_query: Sequence[int] | np.ndarray, batch_size: int, total_steps: int, *,
                 seed: int = 0, ratio: float = INFOBATCH_RATIO, delta: float = INFOBATCH_DELTA) -> None:
        super().__init__(pair_query, batch_size, seed=seed)
        if not 0.0 <= ratio < 1.0:
            raise InputError(f"InfoBatch's prune ratio {ratio} must be in [0, 1)")
        self.ratio, self.delta = float(ratio), float(delta)
        self.total_steps = int(total_steps)
        self.query_loss = np.ones(self.n_queries, dtype=np.float64)
        self.pair_weight = np.ones(len(self.pair_query), dtype=np.float64)
        self.steps_seen = 0
        self._length = self.n_queries

    def pass_length(self) -> int:
        return self._length

    def pass_queries(self, pass_index: int) -> np.ndarray:
        self.pair_weight[:] = 1.0
        pruning = self.steps_seen < self.delta * self.total_steps
        chosen = np.arange(self.n_queries)
        if pruning and self.ratio > 0:
            well_learned = np.flatnonzero(self.query_loss < self.query_loss.mean())
            n_drop = int(round(self.ratio * len(well_learned)))
            dropped = self.rng.choice(well_learned, size=n_drop, replace=False)
            keep = np.ones(self.n_queries, dtype=bool)
            keep[dropped] = False
            chosen = np.flatnonzero(keep)
            kept_low = np.setdiff1d(well_learned, dropped, assume_unique=True)
            self.pair_weight[np.isin(self.pair_query, kept_low)] = 1.0 / (1.0 - self.ratio)
        self._length = len(chosen)
        self.history.append({"pass": pass_index, "queries": len(chosen), "pruning": bool(pruning)})
        return chosen[self.rng.permutation(len(chosen))]

    def observe(self, indices: np.ndarray, signal: np.ndarray) -> None:
        self.query_loss[self.pair_query[np.asarray(indices, dtype=np.int64)]] = np.asarray(signal, dtype=np.float64)
        self.steps_seen += 1

    def loss_weights(self, indices: np.ndarray) -> np.ndarray:
        return self.pair_weight[np.asarray(indices, dtype=np.int64)]


#: ``--pruning`` values of the retriever's training and the training-time method each names
PRUNING = ("none", "static", "dynamic", "infobatch")
#: names that are samplers, not selections (``tasksift select`` points to the retriever's training instead)
TRAINING_TIME = {"opera-dp": "dynamic", "infobatch": "infobatch"}


def make_sampler(pruning: str, pair_query: np.ndarray, batch_size: int, total_steps: int, *, seed: int,
                 base_scores: np.ndarray | None = None) -> QueryPassSampler:
    """The query-level sampler of a ``--pruning`` value: ``dynamic`` (OPERA) or ``infobatch``.

    (``none`` and ``static`` need no sampler of their own: the loop's plain shuffled passes over the pairs.)
    """
    if pruning == "dynamic":
        if base_scores is None:
            raise ValueError("dynamic pruning needs the base pair scores")
        return OperaDynamicSampler(pair_query, base_scores, batch_size, total_steps, seed=seed)
    if pruning == "infobatch":
        return InfoBatchSampler(pair_query, batch_size, total_steps, seed=seed)
    raise InputError(f"pruning {pruning!r} has no sampler", fix="use dynamic or infobatch")
