"""HARP's envelopes against brute force on hand-made effects."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tasksift.selectors.harp.envelope import best_prefix, greedy_order, utility

# 5 leaves x 3 domains: leaf 0 and 1 both help domain 0 (1 more), leaf 2 helps domain 1 and harms domain 2,
# leaf 3 helps domain 2 a little, leaf 4 harms everything
PHI = np.array([
    [0.30, 0.00, 0.05],
    [0.20, 0.05, 0.00],
    [0.00, 0.40, -0.10],
    [0.00, 0.00, 0.15],
    [-0.20, -0.10, -0.05],
])
BASE = np.array([0.5, 0.7, 0.2])


def brute_utility(phi: np.ndarray, base: np.ndarray, leaves: tuple[int, ...], envelope: str) -> float:
    """``sum_d y_d(S)`` written out leaf by leaf and domain by domain."""
    total = 0.0
    for d in range(phi.shape[1]):
        if envelope == "e":
            raw = base[d] + sum(phi[g, d] for g in leaves)
        else:
            best = max([max(phi[g, d], 0.0) for g in leaves], default=0.0)
            raw = base[d] + best - sum(max(-phi[g, d], 0.0) for g in leaves)
        total += min(max(raw, 0.0), 1.0)
    return total


def brute_greedy(phi: np.ndarray, base: np.ndarray, envelope: str) -> tuple[list[int], list[float]]:
    left, order, totals = set(range(len(phi))), [], []
    current: tuple[int, ...] = ()
    while left:
        def key(g: int, current: tuple[int, ...] = current) -> tuple[float, float, int]:
            gain = round(brute_utility(phi, base, (*current, g), envelope) - brute_utility(phi, base, current,
                                                                                            envelope), 12)
            return (-gain, -round(brute_utility(phi, base, (g,), envelope), 12), g)

        g = min(left, key=key)
        left.remove(g)
        current = (*current, g)
        order.append(g)
        totals.append(brute_utility(phi, base, current, envelope))
    return order, totals


@pytest.mark.parametrize("envelope", ["c", "e"])
def test_greedy_order_totals_and_prefix_equal_brute_force(envelope: str) -> None:
    got = greedy_order(PHI, BASE, envelope)
    order, totals = brute_greedy(PHI, BASE, envelope)
    assert got.order.tolist() == order
    np.testing.assert_allclose(got.totals, totals, atol=1e-12)
    np.testing.assert_allclose(got.gains, np.diff([brute_utility(PHI, BASE, (), envelope), *totals]), atol=1e-12)
    running = [brute_utility(PHI, BASE, (), envelope), *totals]
    best = max(running)
    assert got.prefix == min(i for i, t in enumerate(running) if abs(t - best) < 1e-12)


@pytest.mark.parametrize("envelope", ["c", "e"])
def test_clipped_utilities_equal_brute_force_on_every_subset(envelope: str) -> None:
    for k in range(len(PHI) + 1):
        for subset in itertools.combinations(range(len(PHI)), k):
            y = utility(PHI, BASE, list(subset), envelope)
            assert ((y >= 0) & (y <= 1)).all()
            assert y.sum() == pytest.approx(brute_utility(PHI, BASE, subset, envelope), abs=1e-12)


def test_expected_orders_by_hand() -> None:
    # HARP-C: leaf 2 (+0.4 on d1, -0.1 on d2 -> +0.3 total... clipped at 1 on d1: +0.3 - 0.1 = 0.2),
    # leaf 0 (+0.3 on d0, +0.05 on d2 = 0.35) is first; then leaf 3 (+0.15 on d2 beats 0.05 -> +0.10), ...
    c = greedy_order(PHI, BASE, "c")
    assert c.order.tolist() == [0, 2, 3, 1, 4]
    assert c.prefix == 3  # leaf 1 adds nothing once leaf 0 is in: only the best leaf per domain counts
    e = greedy_order(PHI, BASE, "e")
    assert e.order.tolist() == [0, 1, 2, 3, 4]
    assert e.prefix == 4  # leaf 1 adds on top of leaf 0; the harmful leaf 4 is dropped


def test_conservative_credits_only_the_best_leaf_per_domain() -> None:
    phi = np.array([[0.3], [0.2], [0.25]])
    base = np.array([0.4])
    assert utility(phi, base, [0, 1, 2], "c").tolist() == pytest.approx([0.7])
    assert utility(phi, base, [1, 2], "c").tolist() == pytest.approx([0.65])
    res = greedy_order(phi, base, "c")
    assert res.order[0] == 0 and res.prefix == 1
    np.testing.assert_allclose(res.gains, [0.3, 0.0, 0.0])


def test_expansive_adds_effects_up_to_the_clip() -> None:
    phi = np.array([[0.3], [0.2], [0.25]])
    base = np.array([0.4])
    assert utility(phi, base, [0, 1], "e").tolist() == pytest.approx([0.9])
    assert utility(phi, base, [0, 1, 2], "e").tolist() == pytest.approx([1.0])  # clipped
    res = greedy_order(phi, base, "e")
    assert res.order.tolist() == [0, 2, 1]
    np.testing.assert_allclose(res.gains, [0.3, 0.25, 0.05])
    assert res.prefix == 3


def test_harm_counts_in_the_conservative_envelope_and_a_late_bad_leaf_is_dropped() -> None:
    phi = np.array([[0.2, -0.05], [-0.1, -0.1]])
    base = np.array([0.5, 0.5])
    res = greedy_order(phi, base, "c")
    np.testing.assert_allclose(res.totals, [1.15, 0.95])
    assert res.prefix == 1
    assert best_prefix(np.array([0.9, 0.8]), 1.0) == 0  # nothing beats the empty set


def test_bad_shapes_and_envelopes_are_refused() -> None:
    with pytest.raises(ValueError, match="envelope"):
        greedy_order(PHI, BASE, "x")
    with pytest.raises(ValueError, match="domains"):
        utility(PHI, BASE[:2], [0], "c")
