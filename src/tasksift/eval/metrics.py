"""Task metrics as pure functions over arrays.

- option log-likelihood accuracy: an item's prediction is the option with the largest score (the first one on
  a tie); ``accuracy_norm`` divides each option's summed log-probability by its token count first;
- mean answer loss: per item, the mean negative log-probability per token of the right answer, averaged over
  items;
- retrieval, with binary relevance: NDCG@k = DCG@k / IDCG@k with DCG@k = sum over ranks r <= k of
  rel_r / log2(r + 1) and IDCG@k the DCG of min(k, |relevant|) relevant documents at the top;
  Recall@k = |relevant in the top k| / |relevant|; both averaged over queries.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np


def pad_ragged(rows: Sequence[Sequence[float]] | np.ndarray, fill: float = -np.inf) -> np.ndarray:
    """A 2-D float array from rows of different lengths, short rows padded with ``fill``."""
    if isinstance(rows, np.ndarray) and rows.ndim == 2:
        return rows.astype(np.float64, copy=False)
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), fill, dtype=np.float64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = np.asarray(r, dtype=np.float64)
    return out


def option_predictions(scores: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Index of the best-scoring option of each item (the first of equal best scores)."""
    matrix = pad_ragged(scores)
    if matrix.shape[1] == 0:
        raise ValueError("no options to choose from")
    return np.argmax(matrix, axis=1)


def accuracy(predictions: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Share of predictions equal to their label."""
    p = np.asarray(predictions).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if len(p) != len(y):
        raise ValueError(f"{len(p)} predictions but {len(y)} labels")
    if len(y) == 0:
        raise ValueError("accuracy of no items is undefined")
    return float(np.mean(p == y))


def option_accuracy(scores: Sequence[Sequence[float]] | np.ndarray, correct: Sequence[int] | np.ndarray) -> float:
    """Accuracy of picking the highest-scoring option; ``correct[i]`` is the right option's index."""
    return accuracy(option_predictions(scores), correct)


def answer_loss(sums: Sequence[Sequence[float]], counts: Sequence[Sequence[int]],
                correct: Sequence[int] | np.ndarray) -> float:
    """Mean over items of the right answer's mean per-token negative log-probability."""
    losses = [-float(s[c]) / max(int(n[c]), 1) for s, n, c in zip(sums, counts, correct, strict=True)]
    if not losses:
        raise ValueError("answer loss of no items is undefined")
    return float(np.mean(losses))


def option_metrics(sums: Sequence[Sequence[float]], counts: Sequence[Sequence[int]],
                   correct: Sequence[int] | np.ndarray) -> dict[str, float]:
    """``accuracy`` (summed log-probability), ``accuracy_norm`` (per token) and ``answer_loss``."""
    per_token = [np.asarray(s, dtype=np.float64) / np.maximum(np.asarray(n, dtype=np.float64), 1)
                 for s, n in zip(sums, counts, strict=True)]
    return {"accuracy": option_accuracy(sums, correct), "accuracy_norm": option_accuracy(per_token, correct),
            "answer_loss": answer_loss(sums, counts, correct)}


def group_accuracies(sums: Sequence[Sequence[float]], correct: Sequence[int] | np.ndarray,
                     groups: Sequence[str]) -> dict[str, float]:
    """``accuracy/<group>`` of each group (in the order groups first appear) and ``macro_accuracy``, their mean
    (each group counts once, whatever its size)."""
    if len(groups) != len(correct):
        raise ValueError(f"{len(groups)} groups for {len(correct)} items")
    predicted = option_predictions(sums)
    right = np.asarray(correct)
    names = list(dict.fromkeys(groups))
    member = np.asarray(groups, dtype=object)
    out = {f"accuracy/{g}": accuracy(predicted[member == g], right[member == g]) for g in names}
    out["macro_accuracy"] = float(np.mean(list(out.values())))
    return out


def dcg_at_k(ranked: Sequence[Any], relevant: Collection[Any], k: int) -> float:
    """Binary-relevance DCG of the first ``k`` ranked ids."""
    return sum(1.0 / math.log2(r + 2) for r, doc in enumerate(list(ranked)[:k]) if doc in relevant)


def ndcg_at_k(ranked: Sequence[Sequence[Any]], relevant: Sequence[Collection[Any]], k: int = 10) -> float:
    """Mean NDCG@k over queries; ``ranked[i]`` are query i's ids best first, ``relevant[i]`` its relevant ids."""
    _check_queries(ranked, relevant)
    values = []
    for ranks, rel in zip(ranked, relevant, strict=True):
        rel = set(rel)
        ideal = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(rel))))
        values.append(dcg_at_k(ranks, rel, k) / ideal if ideal > 0 else 0.0)
    return float(np.mean(values))


def recall_at_k(ranked: Sequence[Sequence[Any]], relevant: Sequence[Collection[Any]], k: int) -> float:
    """Mean over queries of the share of relevant ids found in the first ``k`` ranked ids."""
    _check_queries(ranked, relevant)
    values = []
    for ranks, rel in zip(ranked, relevant, strict=True):
        rel = set(rel)
        found = len(rel.intersection(list(ranks)[:k]))
        values.append(found / len(rel) if rel else 0.0)
    return float(np.mean(values))


def retrieval_metrics(ranked: Sequence[Sequence[Any]], relevant: Sequence[Collection[Any]],
                      recall_ks: Sequence[int] = (10, 20, 100)) -> dict[str, float]:
    """``ndcg@10`` and ``recall@k`` for each k."""
    out = {"ndcg@10": ndcg_at_k(ranked, relevant, 10)}
    for k in recall_ks:
        out[f"recall@{k}"] = recall_at_k(ranked, relevant, k)
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0.0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        raise ValueError("no values")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _check_queries(ranked: Sequence[Any], relevant: Sequence[Any]) -> None:
    if len(ranked) != len(relevant):
        raise ValueError(f"{len(ranked)} rankings but {len(relevant)} relevance sets")
    if len(ranked) == 0:
        raise ValueError("no queries")
