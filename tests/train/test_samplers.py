"""The retriever's samplers: OPERA's dynamic sampler's schedules and pass sizes with fixed seeds, the InfoBatch
baseline and plain query passes. Pure numpy: no model is loaded here."""

from __future__ import annotations

import numpy as np
import pytest

from tasksift.train.samplers import (
    InfoBatchSampler,
    OperaDynamicSampler,
    QueryPassSampler,
    cosine_schedule,
    cut_share,
    make_sampler,
    pass_size,
    query_scores,
)
from tasksift.util.errors import InputError


# ---------------------------------------------------------------------------------------------------------
# the formulas
# ---------------------------------------------------------------------------------------------------------
def test_schedules_hit_their_end_points() -> None:
    assert cosine_schedule(2.0, 5.0, 0.0) == 2.0
    assert cosine_schedule(2.0, 5.0, 1.0) == 5.0
    assert cosine_schedule(2.0, 5.0, 0.5) == pytest.approx(3.5)
    assert cosine_schedule(0.25, 0.5, 0.0) == 0.25
    assert cosine_schedule(0.25, 0.5, 1.0) == 0.5
    assert pass_size(1000) == 625  # n0 = 0.625 n with r0 = 0.25, x0 = 2
    assert cut_share(2.0, 625, 1000) == pytest.approx(0.25)  # the cut starts at r0
    assert cut_share(5.0, 625, 1000) == pytest.approx((5 * 625 - 1000) / (1000 * 4))
    assert query_scores(np.array([0.2, 0.4, 0.9]), np.array([0, 0, 1]), 2).tolist() == pytest.approx([0.3, 0.9])


def test_the_sampler_schedules_run_from_start_to_end_over_the_passes() -> None:
    n, batch = 40, 5
    rng = np.random.default_rng(0)
    sampler = OperaDynamicSampler(np.arange(n), rng.uniform(0, 1, n), batch, total_steps=5 * 5, seed=0)
    assert sampler.n0 == 25 and sampler.batches_per_pass() == 5 and sampler.n_passes == 5
    for p in range(5):
        assert sum(len(b) for b in sampler.batches(p)) == 25
    first, last = sampler.history[0], sampler.history[-1]
    assert (first["x"], first["c"], first["r"]) == (2.0, 0.25, pytest.approx(0.25))
    assert (last["x"], last["c"]) == (5.0, 0.5)
    assert last["r"] == pytest.approx((5 * 25 - 40) / (40 * 4))
    xs = [h["x"] for h in sampler.history]
    assert xs == sorted(xs)


# ---------------------------------------------------------------------------------------------------------
# dynamic pruning: pass size, inclusion frequency, scores
# ---------------------------------------------------------------------------------------------------------
def test_every_pass_holds_n0_queries_each_once() -> None:
    rng = np.random.default_rng(1)
    pair_query = np.repeat(np.arange(30), rng.integers(1, 4, 30))  # 30 queries with 1 to 3 positives
    sampler = OperaDynamicSampler(pair_query, rng.uniform(-1, 1, len(pair_query)), 4, total_steps=200, seed=3)
    n0 = pass_size(30)
    assert sampler.n0 == n0 == 19
    for p in range(sampler.n_passes):
        pairs = np.concatenate(list(sampler.batches(p)))
        assert len(pairs) == n0
        assert len(set(pair_query[pairs].tolist())) == n0  # one positive per visited query


@pytest.mark.parametrize("x", [2.0, 3.0])
def test_below_cut_queries_come_with_probability_one_over_x(x: float) -> None:
    """Constant strength x (start = end): 40 queries with distinct scores; the (1 - r) quantile leaves 10 above
    the cut, which come every pass; each of the other 30 should come in a share 1/x of the passes. Over 3,000
    passes a share's binomial standard deviation is at most 0.0091: each query's share must be within 0.04
    (over 4 sigma) of 1/x and their mean within 0.01."""
    n, passes = 40, 3000
    scores = np.linspace(-0.5, 0.9, n)
    sampler = OperaDynamicSampler(np.arange(n), scores, 8, total_steps=10**9, seed=7, x_start=x, x_end=x)
    counts = np.zeros(n)
    for p in range(passes):
        for b in sampler.batches(p):
            counts[b] += 1
    share = counts / passes
    always = scores > np.quantile(scores, 1 - cut_share(x, sampler.n0, n))
    assert always.sum() == 10
    assert np.all(share[always] == 1.0)
    assert np.all(np.abs(share[~always] - 1 / x) < 0.04)
    assert abs(share[~always].mean() - 1 / x) < 0.01
    assert all(h["below_cut_probability"] == pytest.approx(1 / x) for h in sampler.history)


def test_positives_above_the_document_cut_are_drawn_five_times_as_often() -> None:
    # query 0 has positives 0 (score 0.9, above the (1 - c) quantile of all pair scores) and 1 (score 0.1)
    pair_query = np.array([0, 0, 1, 2, 3, 4, 5, 6])
    scores = np.array([0.9, 0.1, 0.3, 0.2, 0.25, 0.35, 0.15, 0.05])
    sampler = OperaDynamicSampler(pair_query, scores, 8, total_steps=10**9, seed=2, c_start=0.25, c_end=0.25)
    draws = []
    for p in range(4000):
        for b in sampler.batches(p):
            draws.extend(int(i) for i in b if pair_query[i] == 0)
    share = np.mean(np.array(draws) == 0)
    assert share == pytest.approx(5 / 6, abs=0.03)


def test_scores_change_only_for_pairs_observed() -> None:
    rng = np.random.default_rng(5)
    base = rng.uniform(0, 1, 12)
    sampler = OperaDynamicSampler(np.arange(12) // 2, base, 3, total_steps=10, seed=0)
    batch = next(iter(sampler.batches(0)))
    live = np.array([0.11, 0.22, 0.33])
    sampler.observe(batch, live)
    changed = np.flatnonzero(sampler.scores != base)
    assert sorted(changed.tolist()) == sorted(batch.tolist())
    assert sampler.scores[batch].tolist() == live.tolist()


def test_dynamic_sampler_is_repeatable_with_a_seed() -> None:
    def passes(seed: int) -> list[list[int]]:
        s = OperaDynamicSampler(np.arange(20) // 2, np.linspace(0, 1, 20), 4, total_steps=30, seed=seed)
        return [b.tolist() for p in range(3) for b in s.batches(p)]

    assert passes(0) == passes(0)
    assert passes(0) != passes(1)


# ---------------------------------------------------------------------------------------------------------
# InfoBatch and standard passes
# ---------------------------------------------------------------------------------------------------------
def test_infobatch_prunes_below_mean_queries_and_rescales_the_rest() -> None:
    n = 20
    sampler = InfoBatchSampler(np.arange(n), 5, total_steps=100, seed=0, ratio=0.25)
    assert sampler.signal == "loss"
    first = np.concatenate(list(sampler.batches(0)))
    assert sorted(first.tolist()) == list(range(n))  # equal scores: nothing is below the mean
    losses = np.where(np.arange(n) < 8, 0.1, 2.0)  # 8 well-learned queries
    for b in np.array_split(np.arange(n), 4):
        sampler.observe(b, losses[b])
    second = np.concatenate(list(sampler.batches(1)))
    dropped = sorted(set(range(n)) - set(second.tolist()))
    assert len(second) == n - 2 and all(q < 8 for q in dropped)  # round(0.25 * 8) = 2 pruned, all well-learned
    weights = sampler.loss_weights(np.arange(n))
    kept_low = [q for q in range(8) if q not in dropped]
    assert weights[kept_low].tolist() == pytest.approx([1 / 0.75] * 6)
    assert weights[8:].tolist() == [1.0] * 12
    sampler.steps_seen = 90  # past delta = 0.875 of the 100 steps: no more pruning
    assert len(np.concatenate(list(sampler.batches(2)))) == n
    assert sampler.loss_weights(np.arange(n)).tolist() == [1.0] * n


def test_query_passes_visit_every_query_once() -> None:
    pair_query = np.array([0, 0, 1, 2, 2, 2])
    sampler = QueryPassSampler(pair_query, 2, seed=0)
    pairs = np.concatenate(list(sampler.batches(0)))
    assert sorted(pair_query[pairs].tolist()) == [0, 1, 2]
    assert sampler.batches_per_pass() == 2


def test_make_sampler_and_bad_input() -> None:
    assert isinstance(make_sampler("dynamic", np.arange(4), 2, 10, seed=0, base_scores=np.zeros(4)),
                      OperaDynamicSampler)
    assert isinstance(make_sampler("infobatch", np.arange(4), 2, 10, seed=0), InfoBatchSampler)
    with pytest.raises(InputError, match="no sampler"):
        make_sampler("none", np.arange(4), 2, 10, seed=0)
    with pytest.raises(InputError, match="NaN"):
        OperaDynamicSampler(np.arange(2), np.array([0.1, np.nan]), 2, 10)
    with pytest.raises(InputError, match="no training pairs"):
        QueryPassSampler(np.array([], dtype=np.int64), 2)
