"""The brute-force reference the SPICE tests compare against."""

from __future__ import annotations

import numpy as np


def logdet_gain(g: np.ndarray, chosen: list[int], x: int, alpha: float) -> float:
    """``log det(I + alpha F_{S+x}) - log det(I + alpha F_S)``, each from scratch."""
    d = g.shape[1]
    gs = g[chosen].astype(np.float64)
    base = np.eye(d) + alpha * gs.T @ gs
    gx = g[x].astype(np.float64)
    return float(np.linalg.slogdet(base + alpha * np.outer(gx, gx))[1] - np.linalg.slogdet(base)[1])
