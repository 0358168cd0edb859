"""SPICE's greedy machinery over arrays: the Fisher term, one greedy window, the windows' quotas, the proxy schedule.

With ``F_S = sum_{x in S} g_x g_x^T`` the utility is ``U(S) = log det(I + alpha F_S)``, and the greedy step takes

    score(x | S) = Delta_x(S) - lam * max(0, -cos(g_x, mean of g over S)),
    Delta_x(S)   = log(1 + alpha * g_x^T (I + alpha F_S)^-1 g_x).

``fisher="exact"`` keeps, for every candidate, the quadratic form ``q_x = g_x^T (I + alpha F_S)^-1 g_x`` and
updates it after each selection of ``u`` by Sherman-Morrison: with ``z = (I + alpha F_S)^-1 u`` and
``beta = alpha / (1 + alpha u^T z)``, ``q_x <- q_x - beta (g_x^T z)^2``. One step costs one pass over the
candidates' gradients (``G z``, and ``G u`` for the conflict term) plus ``z`` itself, from either a
dense inverse updated by rank one (``O(d^2)``, when ``d`` is at most the budget) or the product form
``(I + alpha F_S)^-1 = I - sum_j beta_j z_j z_j^T`` (``O(|S| d)``): nothing is ever refactorised.

``fisher="diag"`` replaces ``(I + alpha F_S)`` by its diagonal, ``1 + alpha sum_{s in S} g_s^2`` per
coordinate, so ``q_x = sum_j g_xj^2 / (1 + alpha sum_s g_sj^2)``: cross-coordinate terms are dropped (exact when
the selected gradients have disjoint supports). The reference code's "diag" mode instead adds
``alpha * (|g| g)^2 = alpha g^4`` per selection (its AdaFisher ``h = |g| g``, squared); we add ``alpha g^2``, the
true diagonal of ``alpha F_S``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tasksift.util.errors import InputError

FISHER_MODES = ("exact", "diag")
#: windows whose features take fewer bytes than this run their matrix-vector products on one BLAS thread
SMALL_WINDOW_BYTES = 32 << 20

@runtime_checkable
class GradientProxy(Protocol):
    """The helper SPICE calls to interleave selection with proxy training (it never loads models itself).

    :class:`tasksift.features.gradients.ProxyTrainer` implements it for a real proxy model.
    """

    def gradients(self, rows: np.ndarray) -> np.ndarray:
        """Gradient features of pool rows ``rows`` under the proxy's current weights, ``(len(rows), d)``."""

    def step(self, rows: np.ndarray) -> float | None:
        """One optimiser step on pool rows ``rows``."""


class InverseFactor:
    """``(I + alpha F_S)^-1`` as ``S`` grows, without refactorising: dense, or in product form.

    ``dense`` keeps the ``d x d`` inverse and updates it by rank one (``O(d^2)`` per selection); otherwise
    the inverse is ``I - sum_j beta_j z_j z_j^T`` and applying it costs ``O(|S| d)``. Float64 throughout.
    """

    def __init__(self, dim: int, alpha: float, capacity: int, dense: bool | None = None) -> None:
        self.dim = int(dim)
        self.alpha = float(alpha)
        self.dense = dim <= capacity if dense is None else bool(dense)
        self.count = 0
        if self.dense:
            self.inverse = np.eye(self.dim)
        else:
            self.zs = np.zeros((max(int(capacity), 1), self.dim))
            self.betas = np.zeros(max(int(capacity), 1))

    def apply(self, u: np.ndarray) -> np.ndarray:
        """``(I + alpha F_S)^-1 u``."""
        if self.dense:
            return self.inverse @ u
        z, b = self.zs[: self.count], self.betas[: self.count]
        return u - z.T @ (b * (z @ u))

    def quadratic(self, g: np.ndarray) -> np.ndarray:
        """``g_x^T (I + alpha F_S)^-1 g_x`` for every row of ``g`` (products in ``g``'s precision, sums in float64)."""
        norms = np.einsum("ij,ij->i", g, g, dtype=np.float64)
        if self.count == 0:
            return norms
        if self.dense:
            return np.einsum("ij,ij->i", g @ self.inverse.astype(g.dtype), g, dtype=np.float64)
        proj = (g @ self.zs[: self.count].T.astype(g.dtype)).astype(np.float64)
        return norms - (proj * proj) @ self.betas[: self.count]

    def add(self, u: np.ndarray) -> tuple[np.ndarray, float]:
        """Add ``u`` to ``S``; returns ``(z, beta)`` of the update ``inverse <- inverse - beta z z^T``."""
        z = self.apply(u)
        beta = self.alpha / (1.0 + self.alpha * float(u @ z))
        if self.dense:
            self.inverse -= beta * np.outer(z, z)
        else:
            if self.count == len(self.betas):
                self.zs = np.concatenate([self.zs, np.zeros_like(self.zs)])
                self.betas = np.concatenate([self.betas, np.zeros_like(self.betas)])
            self.zs[self.count] = z
            self.betas[self.count] = beta
        self.count += 1
        return z, beta


@dataclass
class SelectedState:
    """What the selection so far contributes to every later step: the Fisher term and the running sum."""

    fisher: str
    alpha: float
    dim: int
    capacity: int
    factor: InverseFactor | None = None
    den: np.ndarray | None = None
    total: np.ndarray = field(init=False)
    count: int = 0

    def __post_init__(self) -> None:
        self.total = np.zeros(self.dim)
        if self.fisher == "exact":
            self.factor = InverseFactor(self.dim, self.alpha, self.capacity)
        else:
            self.den = np.ones(self.dim)


@dataclass
class Pick:
    """One greedy selection: window-local row, gain, penalty, cosine to the running mean."""

    local: int
    gain: float
    conflict: float
    cosine: float | None


def greedy_window(g: np.ndarray, quota: int, state: SelectedState, *, lam: float, omega: float | None,
                  on_pick: Callable[[Pick], None] | None = None) -> tuple[list[Pick], bool]:
    """Greedy SPICE over the rows of ``g`` for up to ``quota`` picks, updating ``state``.

    ``on_pick(pick)`` is called after each pick (the proxy schedule hangs on it). Returns the picks and
    whether ``omega`` stopped the window early.
    """
    g = np.ascontiguousarray(g, dtype=np.float32)
    n = g.shape[0]
    alpha = state.alpha
    norms = np.sqrt(np.einsum("ij,ij->i", g, g, dtype=np.float64))
    g2 = None
    if state.fisher == "exact":
        assert state.factor is not None
        q = state.factor.quadratic(g)
    else:
        assert state.den is not None
        g2 = g * g
        q = (g2 @ (1.0 / state.den).astype(np.float32)).astype(np.float64)
    dots = (g @ state.total.astype(np.float32)).astype(np.float64) if lam > 0 else None
    taken = np.zeros(n, dtype=bool)
    picks: list[Pick] = []
    first_gain: float | None = None
    for _ in range(min(quota, n)):
        gains = np.log1p(alpha * np.maximum(q, 0.0))
        cos = None
        penalty = np.zeros(n)
        if dots is not None and state.count > 0:
            denom = norms * float(np.linalg.norm(state.total))
            cos = np.divide(dots, denom, out=np.zeros(n), where=denom > 0)
            penalty = lam * np.maximum(0.0, -cos)
        scores = gains - penalty
        scores[taken] = -np.inf
        j = int(np.argmax(scores))
        gain = float(gains[j])
        if omega is not None:
            if first_gain is None:
                first_gain = gain
            elif gain <= omega * first_gain:
                return picks, True
        pick = Pick(j, gain, float(penalty[j]), None if cos is None else float(cos[j]))
        picks.append(pick)
        taken[j] = True
        u = g[j].astype(np.float64)
        if state.fisher == "exact":
            assert state.factor is not None
            z, beta = state.factor.add(u)
            # two matrix-vector products: BLAS runs them faster than one product with a (d, 2) matrix
            w = (g @ z.astype(np.float32)).astype(np.float64)
            q -= beta * w * w
            if dots is not None:
                dots += (g @ g[j]).astype(np.float64)
        else:
            assert state.den is not None and g2 is not None
            state.den += alpha * u * u
            q = (g2 @ (1.0 / state.den).astype(np.float32)).astype(np.float64)
            if dots is not None:
                dots += (g @ g[j]).astype(np.float64)
        state.total += u
        state.count += 1
        if on_pick is not None:
            on_pick(pick)
    return picks, False


@contextmanager
def blas_threads(limit: int | None) -> Iterator[None]:
    """Run BLAS on at most ``limit`` threads inside the block (``None``: leave it alone).

    Our choice, from measurement: a matrix-vector product over a small window gains nothing from a second
    thread and loses much when cores are shared (5,000 x 1,024 float32: 3 ms on one thread, 16 ms on two on a
    busy 2-core machine); over 100,000 rows two threads stay slightly ahead.
    """
    if limit is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn; without it BLAS keeps its threads
        yield
        return
    with threadpool_limits(limits=limit, user_api="blas"):
        yield


@dataclass(frozen=True)
class ProxyRows:
    """A pool whose gradient rows are computed by the proxy when a window reads them, none before (SPICE with
    windows over records: :meth:`tasksift.selectors.spice.SpiceSelector.prepare`): ``n`` rows of width ``dim``."""

    n: int
    dim: int

    def __len__(self) -> int:
        return self.n

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)


class ProxySchedule:
    """The interleaving: one proxy step per ``T`` picks; every window that starts after the first step reads its
    candidates' gradients from the proxy as it is then (given vectors hold the gradients of the unstepped proxy,
    so they are stale from the first step on). Given no vectors (``x=None``: a :class:`ProxyRows` pool), the
    windows before the first step read the unstepped proxy's too.

    Without a proxy every window reads the fixed features.
    """

    def __init__(self, proxy: GradientProxy | None, T: int, name: str, dim: int) -> None:  # noqa: N803
        self.proxy = proxy
        self.T = T
        self.name = name
        self.dim = dim
        self.pending: list[int] = []
        self.steps = 0
        self.computed = 0
        self.refreshed = 0
        self.losses: list[float] = []

    def window_features(self, x: np.ndarray | None, members: np.ndarray) -> np.ndarray:
        """The gradients of a window's candidates: the proxy's current ones once it has stepped (or when no
        vectors were given), else the given ones."""
        if self.proxy is None or (self.steps == 0 and x is not None):
            if x is None:
                raise InputError(f"{self.name}: the pool's gradient rows are computed by a proxy, and none was "
                                 "given", fix="pass proxy= to fit, or the pool's gradient features")
            return x[members]
        g = np.asarray(self.proxy.gradients(members), dtype=np.float32)
        if g.shape != (len(members), self.dim):
            raise InputError(f"{self.name}: the proxy returned gradients of shape {g.shape}, "
                             f"expected {(len(members), self.dim)}")
        self.computed += 1
        self.refreshed += self.steps > 0
        return g

    def picked(self, row: int) -> None:
        """Count a pick; every ``T`` picks the proxy takes one step on them."""
        if self.proxy is None:
            return
        self.pending.append(row)
        if len(self.pending) == self.T:
            loss = self.proxy.step(np.array(self.pending, dtype=np.int64))
            self.steps += 1
            if loss is not None:
                self.losses.append(float(loss))
            self.pending.clear()

    def info(self) -> dict[str, Any]:
        """What the proxy did, for the manifest."""
        out: dict[str, Any] = {"steps": self.steps, "refreshed_windows": self.refreshed,
                               "computed_windows": self.computed, "losses": self.losses}
        describe = getattr(self.proxy, "describe", None)
        if callable(describe):
            out["helper"] = describe()
        return out


def window_quotas(sizes: list[int], budget: int) -> list[int]:
    """The budget shared over windows in proportion to their sizes (largest remainders; none above its size)."""
    total = sum(sizes)
    exact = [budget * s / total for s in sizes]
    quotas = [min(int(math.floor(e)), s) for e, s in zip(exact, sizes, strict=True)]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - quotas[i]), i))
    left = budget - sum(quotas)
    while left > 0:
        moved = False
        for i in order:
            if left == 0:
                break
            if quotas[i] < sizes[i]:
                quotas[i] += 1
                left -= 1
                moved = True
        if not moved:
            break
    return quotas

