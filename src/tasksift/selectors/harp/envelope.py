"""HARP's envelopes: the summed domain utility of a set of leaves, its greedy order and the best prefix.

docs/methods.md, "HARP", step 4. With ``phi[g, d]`` the (estimated) effect of leaf ``g`` on domain ``d`` and ``b_d``
the base model's score on ``d`` (``phi+ = max(phi, 0)``, ``phi- = max(-phi, 0)``):

- ``"c"`` (HARP-C, conservative): ``y_d(S) = clip01(b_d + max_{g in S} phi+[g, d] - sum_{g in S} phi-[g, d])``;
  only the best leaf of each domain is credited, every harm counts (the max over an empty set is 0);
- ``"e"`` (HARP-E, expansive): ``y_d(S) = clip01(b_d + sum_{g in S} phi[g, d])``; effects add up.

``U(S) = sum_d y_d(S)``. :func:`greedy_order` ranks every leaf by its marginal gain ``U(S + g) - U(S)`` given
the leaves ranked before it; :func:`best_prefix` keeps the prefix of that order with the largest running total.

Not published, our choices: ties in the marginal gain (for HARP-C, every leaf that does not beat the current
best of any domain and harms none gains exactly 0) go to the leaf with the larger utility on its own, ``U({g})``,
then to the lower leaf number; among prefixes with the same total the shortest wins (a leaf that adds nothing is
not kept). Gains are compared after rounding to 12 decimals so that sums taken in a different order tie.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ENVELOPES = ("c", "e")
_DECIMALS = 12


def _check(phi: np.ndarray, base: np.ndarray, envelope: str) -> tuple[np.ndarray, np.ndarray]:
    if envelope not in ENVELOPES:
        raise ValueError(f"unknown envelope {envelope!r}; use 'c' (conservative) or 'e' (expansive)")
    phi = np.asarray(phi, dtype=np.float64)
    base = np.asarray(base, dtype=np.float64).reshape(-1)
    if phi.ndim != 2 or phi.shape[1] != base.shape[0]:
        raise ValueError(f"phi has shape {phi.shape}; expected (leaves, {base.shape[0]} domains)")
    return phi, base


def utility(phi: np.ndarray, base: np.ndarray, leaves: list[int] | np.ndarray, envelope: str) -> np.ndarray:
    """``y_d(S)`` for every domain ``d`` (clipped to ``[0, 1]``) for the set ``leaves`` of rows of ``phi``."""
    phi, base = _check(phi, base, envelope)
    rows = phi[np.asarray(leaves, dtype=np.int64)]
    if envelope == "e":
        raw = base + rows.sum(axis=0)
    else:
        best = np.maximum(rows, 0.0).max(axis=0) if len(rows) else np.zeros_like(base)
        raw = base + best - np.maximum(-rows, 0.0).sum(axis=0)
    return np.clip(raw, 0.0, 1.0)


@dataclass
class GreedyResult:
    """Every leaf in greedy order with its marginal gain and the running total ``U`` after it.

    ``start`` is ``U`` of the empty set (``sum_d clip01(b_d)``); ``totals[i]`` is ``U`` of the first ``i + 1``
    leaves of ``order``; ``prefix`` is how many leaves the best prefix keeps (0: none helps).
    """

    order: np.ndarray
    gains: np.ndarray
    totals: np.ndarray
    start: float
    prefix: int

    @property
    def kept(self) -> np.ndarray:
        """The leaves of the best prefix, in greedy order."""
        return self.order[: self.prefix]


def greedy_order(phi: np.ndarray, base: np.ndarray, envelope: str) -> GreedyResult:
    """Rank all leaves by greedy marginal gain of ``U`` under ``envelope`` and find the best prefix.

    Runs in ``O(G^2 D)`` for ``G`` leaves and ``D`` domains, keeping per domain the running best ``phi+`` and
    summed ``phi-`` (HARP-C) or the summed ``phi`` (HARP-E).
    """
    phi, base = _check(phi, base, envelope)
    n_leaves = phi.shape[0]
    pos, neg = np.maximum(phi, 0.0), np.maximum(-phi, 0.0)
    alone = np.clip(base + (phi if envelope == "e" else pos - neg), 0.0, 1.0).sum(axis=1)
    start = float(np.clip(base, 0.0, 1.0).sum())
    best = np.zeros_like(base)  # HARP-C: max phi+ so far per domain
    harm = np.zeros_like(base)  # HARP-C: summed phi- so far
    total = np.zeros_like(base)  # HARP-E: summed phi so far
    current = start
    left = np.ones(n_leaves, dtype=bool)
    order, gains, totals = [], [], []
    for _ in range(n_leaves):
        if envelope == "e":
            values = np.clip(base + total + phi, 0.0, 1.0).sum(axis=1)
        else:
            values = np.clip(base + np.maximum(best, pos) - (harm + neg), 0.0, 1.0).sum(axis=1)
        gain = np.round(values - current, _DECIMALS)
        candidates = np.flatnonzero(left)
        # largest gain, then largest standalone utility, then lowest leaf number
        key = np.lexsort((candidates, -np.round(alone[candidates], _DECIMALS), -gain[candidates]))
        g = int(candidates[key[0]])
        left[g] = False
        order.append(g)
        gains.append(float(values[g] - current))
        current = float(values[g])
        totals.append(current)
        if envelope == "e":
            total += phi[g]
        else:
            best = np.maximum(best, pos[g])
            harm += neg[g]
    totals_arr = np.array(totals, dtype=np.float64)
    return GreedyResult(order=np.array(order, dtype=np.int64), gains=np.array(gains, dtype=np.float64),
                        totals=totals_arr, start=start, prefix=best_prefix(totals_arr, start))


def best_prefix(totals: np.ndarray, start: float) -> int:
    """How many leaves of the greedy order to keep: the shortest prefix whose running total is the largest
    (``0`` when no prefix beats the empty set's ``start``)."""
    running = np.round(np.concatenate([[start], np.asarray(totals, dtype=np.float64)]), _DECIMALS)
    return int(np.argmax(running))  # argmax returns the first (shortest) of equal maxima
