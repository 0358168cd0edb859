"""OPERA's static pruning: the selector against a hand computation, its input checks, and the same pairs kept
inside the retriever's training. Pure numpy: no model is loaded here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasksift.selectors import get
from tasksift.selectors.opera.selector import OperaStaticSelector, PairFeatures
from tasksift.train.samplers import group_queries, pair_cosines, static_pruning
from tasksift.util.errors import InputError


def unit(angle_deg: float) -> list[float]:
    a = math.radians(angle_deg)
    return [math.cos(a), math.sin(a)]


# ---------------------------------------------------------------------------------------------------------
# static pruning
# ---------------------------------------------------------------------------------------------------------
def toy_pairs() -> PairFeatures:
    """Six pairs of three queries; every query vector is (1, 0) and each document sits at a chosen angle, so a
    pair's cosine is cos(angle): q1: 10 and 80 degrees, q2: 30 and 70, q3: 50 and 60."""
    angles = [10, 80, 30, 70, 50, 60]
    keys = ["q1", "q1", "q2", "q2", "q3", "q3"]
    return PairFeatures(np.array([[1.0, 0.0]] * 6), np.array([unit(a) for a in angles]), keys)


def test_static_pruning_equals_the_hand_computation() -> None:
    # cosines: 0.985 (pair 0), 0.174 (1), 0.866 (2), 0.342 (3), 0.643 (4), 0.5 (5)
    # easy, keep 3 (kept_pct 0.5): pairs 0, 2, 4 in that order; every query keeps one positive
    sel = OperaStaticSelector(3, mode="easy").fit(toy_pairs()).selection_
    assert sel.indices.tolist() == [0, 2, 4]
    assert sel.scores.tolist() == pytest.approx([math.cos(math.radians(a)) for a in (10, 30, 50)])
    assert sel.weights.tolist() == [1.0, 1.0, 1.0]
    assert sel.manifest["opera"]["queries_dropped"] == 0
    assert sel.reasons[0] == {"cosine": pytest.approx(math.cos(math.radians(10))), "query": "q1",
                              "query_positives_kept": 1, "query_positives": 2}
    # easy, keep 2: pairs 0 and 2; q3 loses both its positives
    sel = OperaStaticSelector(2, mode="easy").fit(toy_pairs()).selection_
    assert sel.indices.tolist() == [0, 2]
    assert sel.manifest["opera"] == {"mode": "easy", "pairs": 6, "kept_pairs": 2, "kept_pct": pytest.approx(1 / 3),
                                     "queries": 3, "queries_kept": 2, "queries_dropped": 1,
                                     "cosine_cut": pytest.approx(math.cos(math.radians(30)))}
    # hard, keep 3: lowest cosines first: pairs 1 (80 degrees), 3 (70), 5 (60)
    sel = OperaStaticSelector(3, mode="hard").fit(toy_pairs()).selection_
    assert sel.indices.tolist() == [1, 3, 5]
    assert sel.manifest["opera"]["queries_dropped"] == 0
    # hard, keep 2: pairs 1 and 3; q3 drops out
    assert OperaStaticSelector(2, mode="hard").fit(toy_pairs()).selection_.manifest["opera"]["queries_dropped"] == 1


def test_static_random_mode_is_seeded() -> None:
    a = OperaStaticSelector(3, mode="random", seed=4).fit(toy_pairs()).indices_
    b = OperaStaticSelector(3, mode="random", seed=4).fit(toy_pairs()).indices_
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 3
    assert OperaStaticSelector(3, mode="random", seed=4).fit(toy_pairs()).selection_.manifest["opera"][
        "cosine_cut"] is None


def test_static_pruning_is_registered_and_checks_its_input() -> None:
    assert get("opera-sp") is OperaStaticSelector
    assert OperaStaticSelector.needs == "records" and not OperaStaticSelector.needs_target
    with pytest.raises(InputError, match="mode"):
        OperaStaticSelector(2, mode="medium").fit(toy_pairs())
    with pytest.raises(InputError, match="query and document vectors"):
        OperaStaticSelector(2).fit(np.zeros((6, 4)))
    with pytest.raises(InputError, match="pair features disagree"):
        PairFeatures(np.zeros((3, 2)), np.zeros((2, 2)), ["a", "b", "c"])


@pytest.mark.parametrize("name, pruning", [("opera-dp", "dynamic"), ("infobatch", "infobatch")])
def test_training_time_names_point_to_the_retriever_command(name: str, pruning: str) -> None:
    with pytest.raises(InputError, match=f"--pruning {pruning}"):
        get(name)


@pytest.mark.parametrize("kept_pct", [0.5, 1 / 3, 0.1])
def test_training_keeps_the_pairs_the_selector_keeps(kept_pct: float) -> None:
    pairs = toy_pairs()
    pair_query, _ = group_queries(pairs.query_keys)
    rows, info = static_pruning(pair_cosines(pairs.query_vectors, pairs.doc_vectors), pair_query, kept_pct, seed=0)
    budget = max(1, round(kept_pct * len(pairs)))
    sel = OperaStaticSelector(budget, mode="easy").fit(pairs).selection_
    assert rows.tolist() == sorted(sel.indices.tolist())
    assert info == {"kind": "static", **sel.manifest["opera"]}
    with pytest.raises(InputError, match="larger than the pool"):
        static_pruning(np.zeros(4), np.arange(4), 1.5, seed=0)
