import math
from collections import Counter

import numpy as np
import pytest

from tasksift.selectors.dsir import DSIRSelector, log_importance_weights, ngram_buckets, tokenize


def test_tokenize_is_lowercase_wordpunct() -> None:
    assert tokenize("Hello, World! It's 3.5") == ["hello", ",", "world", "!", "it", "'", "s", "3", ".", "5"]


def test_buckets_are_sha256_mod_buckets() -> None:
    import hashlib

    b = ngram_buckets("A cat", num_buckets=97)
    expected = [int(hashlib.sha256(g.encode()).hexdigest(), 16) % 97 for g in ["a", "cat", "a cat"]]
    assert b.tolist() == expected


def _grams(text: str) -> list[str]:
    w = text.lower().split()
    return w + [f"{a} {b}" for a, b in zip(w, w[1:], strict=False)]


def test_weights_equal_hand_computation_on_toy_corpus() -> None:
    pool = ["the cat sat", "stocks fell", "the cat and the dog"]
    target = ["the cat", "a dog"]
    # Hand computation over n-gram strings: these n-grams fall in distinct buckets of the default 10,000
    # (checked below), so bucket frequencies are n-gram frequencies.
    grams = sorted({g for t in pool + target for g in _grams(t)})
    assert len({int(ngram_buckets(g.split()[0])[0]) if " " not in g else int(ngram_buckets(g)[-1])
                for g in grams}) == len(grams)
    p_counts = Counter(g for t in pool for g in _grams(t))
    t_counts = Counter(g for t in target for g in _grams(t))
    p_total, t_total = sum(p_counts.values()), sum(t_counts.values())

    def log_ratio(g: str) -> float:
        return math.log(t_counts[g] / t_total + 1e-8) - math.log(p_counts[g] / p_total + 1e-8)

    expected = [sum(log_ratio(g) for g in _grams(t)) for t in pool]
    got, lengths = log_importance_weights(pool, target, num_buckets=10_000)
    assert got.tolist() == pytest.approx(expected, rel=1e-12)
    assert lengths.tolist() == [5, 3, 9]
    # e.g. "stocks fell": three n-grams the target never has.
    assert expected[1] == pytest.approx(3 * math.log(1e-8) - 2 * math.log(1 / 17 + 1e-8) - math.log(1 / 17 + 1e-8))


def test_topk_takes_the_highest_weights_and_gumbel_is_seeded() -> None:
    pool = ["the cat sat", "stocks fell", "the cat and the dog", "cat", "market news today"]
    target = ["the cat", "a dog", "cat cat"]
    logw, _ = log_importance_weights(pool, target)
    sel = DSIRSelector(2, sampling="topk").fit(pool, target).selection_
    assert sel.indices.tolist() == np.argsort(-logw)[:2].tolist()
    assert sel.scores.tolist() == pytest.approx(logw[sel.indices].tolist())
    g1 = DSIRSelector(3, seed=4).fit(pool, target).selection_
    g2 = DSIRSelector(3, seed=4).fit(pool, target).selection_
    keys = logw + np.random.default_rng(4).gumbel(size=len(pool))
    assert g1.indices.tolist() == g2.indices.tolist() == np.argsort(-keys)[:3].tolist()


def test_examples_without_tokens_are_not_selected() -> None:
    pool = ["", "  ", "the cat", "dogs bark"]
    sel = DSIRSelector(2, sampling="topk").fit(pool, ["the cat"]).selection_
    assert sorted(sel.indices.tolist()) == [2, 3]
