import numpy as np
import pytest

from tasksift.selectors.knn import KNNSelector, round_robin


def brute_force_knn(x: np.ndarray, q: np.ndarray, budget: int, metric: str) -> list[int]:
    """Round-robin over targets on the full distance matrix, skipping candidates already taken."""
    if metric == "l2":
        order = np.argsort(((q[:, None, :] - x[None, :, :]) ** 2).sum(-1), axis=1, kind="stable")
    else:
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        order = np.argsort(-(qn @ xn.T), axis=1, kind="stable")
    taken: list[int] = []
    seen: set[int] = set()
    pointer = [0] * len(q)
    while len(taken) < budget:
        for t in range(len(q)):
            while order[t, pointer[t]] in seen:
                pointer[t] += 1
            c = int(order[t, pointer[t]])
            seen.add(c)
            taken.append(c)
            if len(taken) == budget:
                break
    return taken


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("budget", [1, 7, 60, 300])
def test_knn_equals_brute_force(metric: str, budget: int) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 12)).astype(np.float32)
    q = rng.normal(size=(7, 12)).astype(np.float32)
    sel = KNNSelector(budget, metric=metric, index="flat").fit(x, q).selection_
    assert sel.indices.tolist() == brute_force_knn(x, q, budget, metric)
    assert np.all(sel.weights == 1) and sel.weights.sum() == budget


def test_knn_exact_selection_on_a_line() -> None:
    # Pool on a line, two targets at 0 and 10: round-robin takes 0, 10, then 1, 9, then 2, 8.
    x = np.array([[float(i), 0.0] for i in range(11)], dtype=np.float32)
    q = np.array([[0.0, 0.0], [10.0, 0.0]], dtype=np.float32)
    sel = KNNSelector(6, metric="l2", index="flat").fit(x, q).selection_
    assert sel.indices.tolist() == [0, 10, 1, 9, 2, 8]
    assert [r["target"] for r in sel.reasons] == [0, 1, 0, 1, 0, 1]
    assert [r["round"] for r in sel.reasons] == [1, 1, 2, 2, 3, 3]
    assert sel.reasons[2]["distance"] == pytest.approx(1.0)
    assert sel.scores.tolist() == pytest.approx([0, 0, -1, -1, -2, -2])


def test_knn_skips_candidates_another_target_took() -> None:
    # Both targets sit on candidate 0: the second target gets its next nearest, not a duplicate.
    x = np.array([[0.0], [1.0], [-2.0], [5.0]], dtype=np.float32)
    q = np.array([[0.0], [0.1]], dtype=np.float32)
    sel = KNNSelector(3, metric="l2", index="flat").fit(x, q).selection_
    assert sel.indices.tolist() == [0, 1, 2]


def test_knn_searches_deeper_when_a_target_runs_out() -> None:
    # Ten identical targets all want the same few candidates: the first search depth is too shallow.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    q = np.repeat(x[:1], 10, axis=0)
    sel = KNNSelector(150, metric="l2", index="flat").fit(x, q).selection_
    assert sel.indices.tolist() == brute_force_knn(x, q, 150, "l2")
    assert sel.manifest["search_depth"] > 150 // 10 + 8


def test_round_robin_stops_a_target_whose_complete_list_is_used_up() -> None:
    lists = np.array([[0, 1, -1], [0, 2, 1]])
    picks, done = round_robin(lists, budget=4, lists_are_complete=True)
    assert done and [p[0] for p in picks] == [0, 2, 1]
    picks, done = round_robin(lists, budget=4, lists_are_complete=False)
    assert not done and [p[0] for p in picks] == [0, 2, 1]
