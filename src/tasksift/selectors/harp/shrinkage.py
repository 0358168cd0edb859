"""Empirical-Bayes effects for every leaf from the few that were probed, and the evaluation noise by bootstrap.

docs/methods.md, "HARP", step 3, with the reconstruction it states (the paper does not publish its
estimator). Per domain ``d``, over the measured leaves ``M``:

- ``mu_d`` = mean of the measured effects ``phi[g, d]``, ``tau2_d`` = their spread (variance, ``ddof=1``; 0
  with a single measured leaf);
- ``s2_d`` = the evaluation noise: the bootstrap variance of a measured effect over proxy items (each measured
  leaf's per-item score differences resampled with replacement; the mean over measured leaves);
- a leaf ``g`` of parent ``p`` gets ``phi~[g, d] = w * phi_rep + (1 - w) * mu_d`` with
  ``w = tau2_d / (tau2_d + s2_d / m)``, where ``phi_rep`` is the mean effect of the ``m`` measured leaves of
  ``p`` (for a measured leaf: its own value, ``m = 1``). Our choice where the paper is silent: an unmeasured
  leaf whose parent has no measured leaf borrows from the measured leaves of its region, and from ``mu_d``
  alone (``w = 0``) when its region has none either; ``s2 / m`` is the noise of a mean of ``m`` measurements.

With zero noise measured leaves keep their values and unmeasured ones take their parent's; with large noise
every estimate goes to ``mu_d``. When ``tau2_d`` and ``s2_d`` are both 0, ``w = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def bootstrap_noise(diffs: np.ndarray, domains: np.ndarray, n_domains: int, *, rounds: int = 200,
                    seed: int = 0) -> np.ndarray:
    """``s2[d]``: the bootstrap variance of the mean of per-item differences over domain ``d``'s items.

    ``diffs`` is ``(measured leaves, items)``: each leaf's per-item score minus the base model's. Items are
    resampled with replacement within each domain (the same resamples for every leaf); the variance over
    ``rounds`` resamples is averaged over the leaves.
    """
    diffs = np.atleast_2d(np.asarray(diffs, dtype=np.float64))
    domains = np.asarray(domains, dtype=np.int64)
    rng = np.random.default_rng(seed)
    out = np.zeros(n_domains, dtype=np.float64)
    if diffs.shape[0] == 0:
        return out
    for d in range(n_domains):
        items = np.flatnonzero(domains == d)
        if len(items) == 0:
            continue
        draws = items[rng.integers(0, len(items), size=(rounds, len(items)))]
        means = diffs[:, draws].mean(axis=2)  # (leaves, rounds)
        out[d] = float(means.var(axis=1, ddof=1).mean()) if rounds > 1 else 0.0
    return out


@dataclass
class Shrunk:
    """Estimated effects of every leaf and how they were formed (per domain: ``mu``, ``tau2``, ``noise``)."""

    effects: np.ndarray
    measured: np.ndarray
    mu: np.ndarray
    tau2: np.ndarray
    noise: np.ndarray
    weights: np.ndarray
    source: list[str]


def shrink(measured_phi: np.ndarray, measured_leaves: np.ndarray, leaf_parent: np.ndarray,
           parent_region: np.ndarray, noise: np.ndarray) -> Shrunk:
    """Empirical-Bayes ``phi~`` for every leaf (see the module docstring).

    ``measured_phi`` is ``(len(measured_leaves), domains)``; ``noise`` is ``s2`` per domain. ``source[g]`` says
    where leaf ``g``'s estimate comes from: ``measured``, ``parent``, ``region`` or ``global``.
    """
    phi = np.atleast_2d(np.asarray(measured_phi, dtype=np.float64))
    leaves = np.asarray(measured_leaves, dtype=np.int64)
    leaf_parent = np.asarray(leaf_parent, dtype=np.int64)
    parent_region = np.asarray(parent_region, dtype=np.int64)
    noise = np.asarray(noise, dtype=np.float64).reshape(-1)
    n_leaves, n_domains = len(leaf_parent), phi.shape[1]
    if len(leaves) == 0:
        raise ValueError("shrinkage needs at least one measured leaf")
    if phi.shape[0] != len(leaves) or noise.shape[0] != n_domains:
        raise ValueError("measured_phi, measured_leaves and noise do not agree in shape")
    mu = phi.mean(axis=0)
    tau2 = phi.var(axis=0, ddof=1) if len(leaves) > 1 else np.zeros(n_domains)
    measured = np.zeros(n_leaves, dtype=bool)
    measured[leaves] = True
    row_of = {int(g): i for i, g in enumerate(leaves)}

    def weight(m: int) -> np.ndarray:
        s2 = noise / m
        denom = tau2 + s2
        return np.divide(tau2, denom, out=np.ones(n_domains), where=denom > 0)

    effects = np.empty((n_leaves, n_domains), dtype=np.float64)
    weights = np.zeros((n_leaves, n_domains), dtype=np.float64)
    source: list[str] = []
    for g in range(n_leaves):
        if measured[g]:
            rep, m, src = phi[row_of[g]], 1, "measured"
        else:
            p = leaf_parent[g]
            peers = [row_of[int(h)] for h in leaves if leaf_parent[h] == p]
            src = "parent"
            if not peers:
                peers = [row_of[int(h)] for h in leaves if parent_region[leaf_parent[h]] == parent_region[p]]
                src = "region"
            if not peers:
                effects[g], source = mu, [*source, "global"]
                continue
            rep, m = phi[peers].mean(axis=0), len(peers)
        w = weight(m)
        effects[g] = w * rep + (1.0 - w) * mu
        weights[g] = w
        source.append(src)
    return Shrunk(effects=effects, measured=measured, mu=mu, tau2=tau2, noise=noise, weights=weights,
                  source=source)
