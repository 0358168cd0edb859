import numpy as np

from tasksift.selectors.random import RandomSelector


def test_random_is_seeded_unique_and_in_range() -> None:
    a = RandomSelector(50, seed=7).fit(range(1000)).selection_
    b = RandomSelector(50, seed=7).fit(range(1000)).selection_
    c = RandomSelector(50, seed=8).fit(range(1000)).selection_
    assert a.indices.tolist() == b.indices.tolist()
    assert a.indices.tolist() != c.indices.tolist()
    assert len(set(a.indices.tolist())) == 50
    assert a.indices.min() >= 0 and a.indices.max() < 1000
    assert a.weights.sum() == 50


def test_random_matches_numpy_generator() -> None:
    sel = RandomSelector(5, seed=3).fit(range(100)).selection_
    expected = np.random.default_rng(3).choice(100, size=5, replace=False)
    assert sel.indices.tolist() == expected.tolist()


def test_random_whole_pool_is_a_permutation() -> None:
    sel = RandomSelector(20, seed=1).fit(range(20)).selection_
    assert sorted(sel.indices.tolist()) == list(range(20))
