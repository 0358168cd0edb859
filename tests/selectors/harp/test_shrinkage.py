"""Empirical-Bayes effects and bootstrap noise."""

from __future__ import annotations

import numpy as np
import pytest

from tasksift.selectors.harp.shrinkage import bootstrap_noise, shrink

# 6 leaves in 3 parents (two regions: parents 0, 1 in region 0, parent 2 in region 1); leaves 0, 2, 3 measured
LEAF_PARENT = np.array([0, 0, 1, 1, 1, 2])
PARENT_REGION = np.array([0, 0, 1])
MEASURED = np.array([0, 2, 3])
PHI = np.array([[0.10, -0.02], [0.30, 0.04], [0.20, 0.01]])


def test_zero_noise_keeps_measured_values_and_gives_unmeasured_leaves_their_parent() -> None:
    est = shrink(PHI, MEASURED, LEAF_PARENT, PARENT_REGION, noise=np.zeros(2))
    np.testing.assert_allclose(est.effects[MEASURED], PHI)
    np.testing.assert_allclose(est.effects[1], PHI[0])  # parent 0's only measured leaf
    np.testing.assert_allclose(est.effects[4], PHI[1:].mean(axis=0))  # parent 1: mean of leaves 2 and 3
    # parent 2 has no measured leaf and neither has its region: the global mean
    assert est.source == ["measured", "parent", "measured", "measured", "parent", "global"]
    np.testing.assert_allclose(est.effects[5], PHI.mean(axis=0))
    assert est.measured.tolist() == [True, False, True, True, False, False]


def test_large_noise_sends_every_estimate_to_the_global_mean() -> None:
    est = shrink(PHI, MEASURED, LEAF_PARENT, PARENT_REGION, noise=np.full(2, 1e9))
    np.testing.assert_allclose(est.effects, np.tile(PHI.mean(axis=0), (6, 1)), atol=1e-6)


def test_weights_follow_the_formula() -> None:
    noise = np.array([0.005, 0.0004])
    est = shrink(PHI, MEASURED, LEAF_PARENT, PARENT_REGION, noise=noise)
    mu, tau2 = PHI.mean(axis=0), PHI.var(axis=0, ddof=1)
    w1 = tau2 / (tau2 + noise)
    np.testing.assert_allclose(est.effects[0], w1 * PHI[0] + (1 - w1) * mu)
    w2 = tau2 / (tau2 + noise / 2)  # the parent mean of two measured leaves
    np.testing.assert_allclose(est.effects[4], w2 * PHI[1:].mean(axis=0) + (1 - w2) * mu)
    np.testing.assert_allclose(est.mu, mu)
    np.testing.assert_allclose(est.tau2, tau2)


def test_region_fallback() -> None:
    leaf_parent = np.array([0, 1, 2])
    parent_region = np.array([0, 0, 1])
    est = shrink(np.array([[0.4]]), np.array([0]), leaf_parent, parent_region, noise=np.zeros(1))
    assert est.source == ["measured", "region", "global"]
    np.testing.assert_allclose(est.effects[:, 0], [0.4, 0.4, 0.4])


def test_bootstrap_noise_matches_the_variance_of_a_mean() -> None:
    rng = np.random.default_rng(0)
    diffs = rng.normal(0.0, 1.0, size=(3, 400))
    domains = np.repeat([0, 1], 200)
    s2 = bootstrap_noise(diffs, domains, 2, rounds=400, seed=1)
    expected = [diffs[:, domains == d].var(axis=1).mean() / 200 for d in range(2)]
    np.testing.assert_allclose(s2, expected, rtol=0.25)
    assert bootstrap_noise(np.zeros((2, 10)), np.zeros(10, dtype=int), 1).tolist() == [0.0]


def test_needs_a_measured_leaf() -> None:
    with pytest.raises(ValueError, match="at least one"):
        shrink(np.zeros((0, 1)), np.zeros(0, dtype=int), LEAF_PARENT, PARENT_REGION, noise=np.zeros(1))
