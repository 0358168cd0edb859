"""LESS against a brute-force cosine matrix: max over a task's targets, mean over tasks, top k."""

from __future__ import annotations

import numpy as np
import pytest

from tasksift.records import domain_index
from tasksift.selectors import available
from tasksift.selectors.less import LESSSelector, less_scores
from tasksift.util.errors import InputError


def brute_force_less(x: np.ndarray, q: np.ndarray, domains: list[str] | None, budget: int) -> tuple[list[int], list]:
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    cos = (x64 @ q64.T) / np.outer(np.linalg.norm(x64, axis=1), np.linalg.norm(q64, axis=1))
    labels = domains or ["one"] * len(q)
    tasks = list(dict.fromkeys(labels))
    per_task = np.stack([cos[:, [i for i, d in enumerate(labels) if d == t]].max(1) for t in tasks], axis=1)
    score = per_task.mean(1)
    order = sorted(range(len(x)), key=lambda i: (-score[i], i))[:budget]
    return order, [score[i] for i in order]


@pytest.mark.parametrize("domains", [None, ["a", "b", "a", "c", "b", "a"]])
@pytest.mark.parametrize("budget", [1, 17, 200])
def test_less_equals_brute_force(domains: list[str] | None, budget: int) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 32)).astype(np.float32)
    q = rng.normal(size=(6, 32)).astype(np.float32)
    sel = LESSSelector(budget, domains=domains).fit(x, q).selection_
    order, scores = brute_force_less(x, q, domains, budget)
    assert sel.indices.tolist() == order
    np.testing.assert_allclose(sel.scores, scores, rtol=1e-5, atol=1e-6)
    assert np.all(sel.weights == 1) and sel.weights.sum() == budget


def test_less_by_hand() -> None:
    # targets: task "x" along e1 and e2, task "y" along -e1
    q = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]], dtype=np.float32)
    x = np.array([[1.0, 1.0], [2.0, 0.0], [-1.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    sel = LESSSelector(4, domains=["x", "x", "y"]).fit(x, q).selection_
    # row 0: max(0.707, 0.707) = 0.707 for x, -0.707 for y -> 0;  row 1: (1 + -1) / 2 = 0
    # row 2: (0 + 1) / 2 = 0.5;  row 3 (zeros): cosine 0 everywhere -> 0
    assert sel.indices.tolist() == [2, 0, 1, 3]
    np.testing.assert_allclose(sel.scores, [0.5, 0.0, 0.0, 0.0], atol=1e-6)
    assert sel.reasons[0] == {"target": 2, "cosine": pytest.approx(1.0), "tasks": {"x": 0.0, "y": pytest.approx(1.0)}}
    assert sel.manifest["tasks"] == {"x": 2, "y": 1}
    single = LESSSelector(2).fit(x, q).selection_
    assert single.indices.tolist() == [1, 2] and set(single.reasons[0]) == {"target", "cosine"}


def test_scores_are_computed_in_blocks_the_same_way() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1000, 8)).astype(np.float32)
    q = rng.normal(size=(4, 8)).astype(np.float32)
    task_of = np.array([0, 1, 0, 1])
    whole = less_scores(x, q, task_of, 2, block_rows=10_000)
    blocked = less_scores(x, q, task_of, 2, block_rows=64)
    for a, b in zip(whole, blocked, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_domains_from_the_command_line() -> None:
    assert domain_index('["m", "c", "m"]', 3, who="less")[1].tolist() == [0, 1, 0]
    names, task_of = domain_index("m, c,m", 3, who="less")
    assert names == ["m", "c"] and task_of.tolist() == [0, 1, 0]
    with pytest.raises(InputError, match="2 domain labels for 3"):
        domain_index(["a", "b"], 3, who="less")
    with pytest.raises(InputError, match="list"):
        domain_index('{"a": 1}', 1, who="less")


def test_less_input_errors_and_registry() -> None:
    x = np.ones((5, 3), dtype=np.float32)
    with pytest.raises(InputError, match="3 dimensions, target features 4"):
        LESSSelector(2).fit(x, np.ones((2, 4), dtype=np.float32))
    assert available()["less"] is LESSSelector and LESSSelector.needs == "vectors"


def test_less_through_the_python_api() -> None:
    from tasksift.api import select

    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    q = rng.normal(size=(3, 6)).astype(np.float32)
    sel = select(pool_vectors=x, target_vectors=q, method="less", budget=5, domains="a,b,a")
    assert sel.indices.tolist() == brute_force_less(x, q, ["a", "b", "a"], 5)[0]


def brute_force_per_task(x: np.ndarray, q: np.ndarray, domains: list[str], budget: int) -> list[tuple[int, str]]:
    """The per-task split written out: tasks in first-appearance order take, in turn, their best untaken row."""
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    cos = (x64 @ q64.T) / np.outer(np.linalg.norm(x64, axis=1), np.linalg.norm(q64, axis=1))
    tasks = list(dict.fromkeys(domains))
    task_score = {t: cos[:, [i for i, d in enumerate(domains) if d == t]].max(1) for t in tasks}
    taken: list[tuple[int, str]] = []
    while len(taken) < budget:
        for t in tasks:
            if len(taken) == budget:
                break
            used = {row for row, _ in taken}
            row = min((i for i in range(len(x)) if i not in used), key=lambda i: (-task_score[t][i], i))
            taken.append((row, t))
    return taken


def test_per_task_by_hand() -> None:
    # task "x" (targets along e1, e2) ranks rows 1, 0, 2, 3; task "y" (along -e1) ranks rows 2, 3, 0, 1
    q = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]], dtype=np.float32)
    x = np.array([[1.0, 1.0], [2.0, 0.0], [-1.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    sel = LESSSelector(3, domains=["x", "x", "y"], per_task=True).fit(x, q).selection_
    assert sel.indices.tolist() == [1, 2, 0]
    np.testing.assert_allclose(sel.scores, [1.0, 1.0, 0.7071068], atol=1e-6)
    assert [(r["taken_by"], r["round"]) for r in sel.reasons] == [("x", 1), ("y", 1), ("x", 2)]
    assert sel.manifest["taken_per_task"] == {"x": 2, "y": 1}
    # the mean over tasks takes rows 2 and 0 first instead (0.5, then the tie at 0 goes to the earlier row)
    assert LESSSelector(3, domains=["x", "x", "y"]).fit(x, q).selection_.indices.tolist() == [2, 0, 1]


@pytest.mark.parametrize("budget", [1, 3, 29, 120])
def test_per_task_equals_brute_force_and_shares_the_budget(budget: int) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(120, 16)).astype(np.float32)
    q = rng.normal(size=(7, 16)).astype(np.float32)
    domains = ["b", "a", "b", "c", "a", "c", "c"]
    sel = LESSSelector(budget, domains=domains, per_task=True).fit(x, q).selection_
    expected = brute_force_per_task(x, q, domains, budget)
    assert sel.indices.tolist() == [row for row, _ in expected]
    assert [r["taken_by"] for r in sel.reasons] == [t for _, t in expected]
    assert len(set(sel.indices.tolist())) == budget
    counts = sel.manifest["taken_per_task"]
    assert sum(counts.values()) == budget and max(counts.values()) - min(counts.values()) <= 1
    assert list(counts) == ["b", "a", "c"] and counts["b"] >= counts["a"] >= counts["c"]


def test_per_task_with_one_task_is_the_plain_top_k() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    q = rng.normal(size=(4, 8)).astype(np.float32)
    plain = LESSSelector(9).fit(x, q).selection_
    split = LESSSelector(9, per_task=True).fit(x, q).selection_
    assert split.indices.tolist() == plain.indices.tolist() and "taken_per_task" not in split.manifest


def test_per_task_from_the_command_line_text() -> None:
    from tasksift.util.params import convert_params

    assert convert_params("less", LESSSelector.parameters, {"per_task": "true"})["per_task"] is True
    with pytest.raises(InputError, match="per_task"):
        convert_params("less", LESSSelector.parameters, {"per_task": "maybe"})
