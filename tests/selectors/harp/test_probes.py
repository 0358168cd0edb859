"""Probes: the surrogate, the option scores, the cache that makes a rerun skip finished leaves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasksift.records import domain_index
from tasksift.selectors.harp.lm_probe import proxy_options
from tasksift.selectors.harp.probes import EmbeddingClassifierProbe, ProbeRunner, option_item_scores
from tasksift.util.errors import InputError


def labelled(n: int = 60, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    x = rng.normal(size=(n, 6)) + np.eye(6)[y] * 3
    return x.astype(np.float32), [f"c{v}" for v in y]


class Counting:
    """A probe that counts its trainings and can fail on demand (a run killed part way)."""

    def __init__(self, inner: EmbeddingClassifierProbe, fail_after: int | None = None) -> None:
        self.inner, self.fail_after, self.trained = inner, fail_after, 0
        self.domain_names, self.item_domains = inner.domain_names, inner.item_domains

    def describe(self) -> dict:
        return self.inner.describe()

    def base_scores(self) -> np.ndarray:
        return self.inner.base_scores()

    def leaf_scores(self, rows: np.ndarray) -> np.ndarray:
        if self.fail_after is not None and self.trained >= self.fail_after:
            raise RuntimeError("killed")
        self.trained += 1
        return self.inner.leaf_scores(rows)


def test_surrogate_learns_from_a_leaf_of_its_classes() -> None:
    x, y = labelled()
    probe = EmbeddingClassifierProbe(x, y, x[:20], y[:20])
    base = probe.base_scores()
    np.testing.assert_allclose(base, 1 / 3)
    assert probe.leaf_scores(np.arange(20, 60)).mean() > 0.6
    # rows whose answers are no proxy class teach nothing
    other = EmbeddingClassifierProbe(x, ["zzz"] * 60, x[:20], y[:20])
    np.testing.assert_allclose(other.leaf_scores(np.arange(20, 60)), base)


def test_probe_cache_resumes_and_never_retrains_a_finished_leaf(tmp_path: Path) -> None:
    x, y = labelled()
    texts = [f"row {i}" for i in range(len(x))]
    leaves = [np.arange(i, i + 10) for i in range(0, 60, 10)]
    killed = Counting(EmbeddingClassifierProbe(x, y, x[:10], y[:10]), fail_after=3)
    with pytest.raises(RuntimeError, match="killed"):
        ProbeRunner(killed, texts, cache_dir=tmp_path).measure(leaves)
    resumed = Counting(EmbeddingClassifierProbe(x, y, x[:10], y[:10]))
    got = ProbeRunner(resumed, texts, cache_dir=tmp_path).measure(leaves)
    assert (got.trained, got.cached, resumed.trained) == (3, 3, 3)
    again = Counting(EmbeddingClassifierProbe(x, y, x[:10], y[:10]))
    runner = ProbeRunner(again, texts, cache_dir=tmp_path)
    same = runner.measure(leaves[::-1])  # any order: leaves are keyed by content
    assert (same.trained, again.trained) == (0, 0)
    np.testing.assert_allclose(same.scores, got.scores[::-1])
    np.testing.assert_allclose(runner.base(), again.inner.base_scores())
    # other settings, other cache entries
    other = Counting(EmbeddingClassifierProbe(x, y, x[:10], y[:10], steps=7))
    assert ProbeRunner(other, texts, cache_dir=tmp_path).measure(leaves[:2]).trained == 2


def test_option_scores_and_domains() -> None:
    scores = [np.array([0.0, np.log(3.0)]), np.array([-1.0, -5.0, -1.0])]
    np.testing.assert_allclose(option_item_scores(scores, [1, 2], "prob"), [0.75, np.exp(-1) / (2 * np.exp(-1)
                                                                                                 + np.exp(-5))])
    assert option_item_scores(scores, [1, 2], "accuracy").tolist() == [1.0, 0.0]  # ties go to the first
    with pytest.raises(InputError, match="metric"):
        option_item_scores(scores, [0, 0], "f1")
    assert domain_index(None, 3, who="harp", sort=True, none_is_missing=True)[0] == ["all"]
    names, idx = domain_index(["b", "a", "b"], 3, who="harp", sort=True, none_is_missing=True)
    assert names == ["a", "b"] and idx.tolist() == [1, 0, 1]


def test_proxy_options_built_from_target_answers() -> None:
    opts, correct = proxy_options(["pos", "neg", "pos"])
    assert opts == [["neg", "pos"]] * 3 and correct == [1, 0, 1]
    answers = [f"definition {i}" for i in range(10)]
    opts, correct = proxy_options(answers, n_options=4, seed=0)
    assert all(len(o) == 4 and o[c] == a for o, c, a in zip(opts, correct, answers, strict=True))
    assert proxy_options(answers, n_options=4, seed=0) == (opts, correct)
    given, _ = proxy_options(["x", "y"], [["x", "q"], None])
    assert given[0] == ["x", "q"] and given[1] == ["x", "y"]
    with pytest.raises(InputError, match="two distinct"):
        proxy_options(["same", "same"])
