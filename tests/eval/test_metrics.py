"""The metrics against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasksift.eval.metrics import (
    accuracy,
    answer_loss,
    mean_std,
    ndcg_at_k,
    option_accuracy,
    option_metrics,
    option_predictions,
    recall_at_k,
    retrieval_metrics,
)


def test_ndcg_at_10_on_a_fixed_ranking() -> None:
    ranked = [["a", "x", "b", "y", "z"]]
    relevant = [{"a", "b", "c"}]
    dcg = 1 / math.log2(2) + 1 / math.log2(4)  # ranks 1 and 3
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, relevant, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(ranked, relevant, 10) == pytest.approx(0.703918, abs=1e-6)


def test_ndcg_cuts_at_k_and_averages_over_queries() -> None:
    ranked = [["x", "a"], ["b", "y"]]
    relevant = [{"a"}, {"b"}]
    assert ndcg_at_k(ranked, relevant, 1) == pytest.approx(0.5)  # query 1 misses at k=1, query 2 is perfect
    assert ndcg_at_k(ranked, relevant, 2) == pytest.approx((1 / math.log2(3) + 1) / 2)
    assert ndcg_at_k([["b", "a"]], [{"a", "b"}], 10) == pytest.approx(1.0)


def test_recall_at_k() -> None:
    ranked = [["a", "x", "b", "y"], ["q", "r", "s", "t"]]
    relevant = [{"a", "b", "c"}, {"t"}]
    assert recall_at_k(ranked, relevant, 1) == pytest.approx((1 / 3 + 0) / 2)
    assert recall_at_k(ranked, relevant, 3) == pytest.approx((2 / 3 + 0) / 2)
    assert recall_at_k(ranked, relevant, 4) == pytest.approx((2 / 3 + 1) / 2)
    out = retrieval_metrics(ranked, relevant, recall_ks=(1, 4))
    assert set(out) == {"ndcg@10", "recall@1", "recall@4"}


def test_option_accuracy_from_a_fixed_score_matrix() -> None:
    scores = np.array([[-1.0, -2.0, -3.0],
                       [-5.0, -0.5, -0.7],
                       [-2.0, -2.0, -9.0],   # a tie: the first option wins
                       [-4.0, -3.0, -1.0]])
    correct = [0, 2, 1, 2]
    assert option_predictions(scores).tolist() == [0, 1, 0, 2]
    assert option_accuracy(scores, correct) == pytest.approx(2 / 4)


def test_option_accuracy_on_ragged_options() -> None:
    scores = [np.array([-1.0, -0.1]), np.array([-3.0, -2.0, -0.5, -4.0])]
    assert option_predictions(scores).tolist() == [1, 2]
    assert option_accuracy(scores, [1, 0]) == pytest.approx(0.5)


def test_option_metrics_accuracy_norm_and_answer_loss() -> None:
    sums = [np.array([-6.0, -4.0]), np.array([-2.0, -9.0])]
    counts = [np.array([6, 2]), np.array([1, 3])]
    out = option_metrics(sums, counts, correct=[0, 1])
    assert out["accuracy"] == pytest.approx(0.0)  # picks 1 (-4 > -6) and 0 (-2 > -9)
    assert out["accuracy_norm"] == pytest.approx(0.5)  # per token: -1 vs -2 -> 0 right; -2 vs -3 -> 0 wrong
    assert out["answer_loss"] == pytest.approx((6 / 6 + 9 / 3) / 2)
    assert answer_loss(sums, counts, [1, 0]) == pytest.approx((4 / 2 + 2 / 1) / 2)


def test_accuracy_and_mean_std() -> None:
    assert accuracy([1, 0, 1], [1, 1, 1]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        accuracy([1], [1, 0])
    mean, std = mean_std([0.5, 0.7, 0.9])
    assert mean == pytest.approx(0.7)
    assert std == pytest.approx(0.2)  # sample std: sqrt((0.04 + 0 + 0.04) / 2)
    assert mean_std([0.3]) == (0.3, 0.0)


def test_group_accuracies_average_each_group_once() -> None:
    from tasksift.eval.metrics import group_accuracies

    sums = [[0.0, -1.0], [-1.0, 0.0], [0.0, -1.0], [0.0, -1.0, -2.0]]  # predicted: 0, 1, 0, 0
    got = group_accuracies(sums, [0, 0, 0, 2], ["b", "a", "a", "a"])
    assert got == {"accuracy/b": 1.0, "accuracy/a": pytest.approx(1 / 3), "macro_accuracy": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="3 groups for 4 items"):
        group_accuracies(sums, [0, 0, 0, 2], ["a", "b", "c"])
