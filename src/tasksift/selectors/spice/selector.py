"""SPICE: greedy information gain with a gradient-conflict penalty (Chang, Zhang et al., ICLR 2026).

docs/methods.md, "SPICE". Features are per-example gradients ``g_x`` (:mod:`tasksift.features.gradients`); the
greedy step, ``log(1 + alpha g_x^T (I + alpha F_S)^-1 g_x)`` minus ``lam`` times the conflict with the mean
selected gradient, is in :mod:`tasksift.selectors.spice.greedy`.

Windows and the proxy (the paper's interleaving): with ``window`` set, the pool is shuffled (seeded) and cut
into successive windows of that size; each window gets a share of the budget proportional to its size (largest
remainders) and is selected greedily. Given a proxy helper (``fit(..., proxy=...)``, see
:class:`~tasksift.selectors.spice.greedy.GradientProxy`; :meth:`SpiceSelector.prepare` builds one when
``tasksift.select`` computed the gradient features from the pool's records), every ``T`` selections the proxy
takes one optimiser step on the last ``T`` selected rows, and every window that starts after the first step
reads its candidates' gradients from the proxy (its weights at that window's start) instead of the vectors given
to ``fit`` (those are the unstepped proxy's). Through ``tasksift.select`` no vectors are given
(:meth:`SpiceSelector.defers_pool_features`): the pool is :class:`~tasksift.selectors.spice.greedy.ProxyRows` and
the proxy computes the windows before its first step too. Without a proxy the gradients are fixed. ``omega`` (SPICE+): a
window stops taking examples once the gain of the best-scoring candidate falls to ``omega`` times the window's
first gain; its unused budget is not handed on, so the selection can be smaller than the budget.

Our choices where the paper is silent: ``F_S`` and the running mean cover every example selected so far, across
windows, each with the gradient it had when it was taken (the reference restarts both in every window, as it
selects one training batch per window); ``cos`` is 0 for a zero gradient and there is no penalty while ``S``
is empty; ties go to the earlier row of the window; the target set is not read (SPICE selects for the proxy's
own training signal), so ``fit`` accepts ``target=None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tasksift.features.gradients.recipe import (
    GradientRecipe,
    gradient_model,
    gradient_texts,
    proxy_trainer,
    selection_gradients,
)
from tasksift.selectors.base import Context, Inputs, Selection, Selector, as_float_matrix
from tasksift.selectors.registry import register
from tasksift.selectors.spice.greedy import (
    FISHER_MODES,
    SMALL_WINDOW_BYTES,
    GradientProxy,
    Pick,
    ProxyRows,
    ProxySchedule,
    SelectedState,
    blas_threads,
    greedy_window,
    window_quotas,
)
from tasksift.util.errors import InputError
from tasksift.util.params import Interval, Options
from tasksift.util.progress import progress_bar


@register
class SpiceSelector(Selector):
    """SPICE: greedy ``log det(I + alpha F_S)`` gain minus ``lam`` times the gradient-conflict penalty.

    Parameters: ``alpha`` (1.0), ``lam`` (0.1), ``fisher`` (``exact`` | ``diag``), ``omega`` (SPICE+ early
    stop; ``None``: off), ``window`` (``None``: the whole pool), ``T`` (selections per proxy step, 10). A
    proxy helper goes to :meth:`fit`. Score: ``gain - conflict``. Reason: ``gain``, ``conflict`` (the
    penalty subtracted), ``cosine`` to the running mean (``None`` for the first pick), ``step`` (1-based, over
    the whole run) and ``window``. See the module docstring for every choice.
    """

    name = "spice"
    needs = "vectors"
    features = "gradients"
    needs_target = False
    summary = "greedy log det(I + alpha F) gain of gradients with a gradient-conflict penalty"
    parameters = {
        "alpha": [Interval(float, 0, None, "neither")], "lam": [Interval(float, 0)],
        "fisher": [Options(*FISHER_MODES)], "omega": [Interval(float, 0, 1), None],
        "window": [Interval(int, 1), None], "T": [Interval(int, 1)],
    }

    def __init__(self, budget: int, *, seed: int = 0, alpha: float = 1.0, lam: float = 0.1, fisher: str = "exact",
                 omega: float | None = None, window: int | None = None, T: int = 10) -> None:  # noqa: N803
        super().__init__(budget, seed=seed)
        self._keep(locals())

    @classmethod
    def defers_pool_features(cls, params: Mapping[str, Any]) -> bool:
        """With windows, the proxy computes each window's gradients as the window starts (``prepare``): the
        first pass over the whole pool that ``tasksift.select`` would compute is never needed."""
        return params.get("window") is not None

    def prepare(self, inputs: Inputs, ctx: Context) -> Inputs:
        """The proxy trainer for the interleaved updates, built when the gradient features are computed here
        from the pool's records (the proxy reads them) and the greedy runs over windows (with one window there
        is no later window to re-read gradients for).

        Features left to this method (``inputs.deferred``, see :meth:`defers_pool_features`): with more than
        one window the pool becomes :class:`ProxyRows` and the proxy computes every window's rows, the first
        ones from its unstepped weights (the rows a first pass would have given, up to float32 noise of how the
        texts are batched); with one window (``window`` at least the pool's size) the rows are computed here,
        cached, as for ``window=None``."""
        self._validate_params()
        if inputs.pool_records is None or self.window is None or not (inputs.featurized_here or inputs.deferred):
            return inputs
        recipe = GradientRecipe.of(type(self).feature_defaults, ctx.features)
        texts, _, loss = gradient_texts(inputs.pool_records, None, ctx.model, recipe.values["kind"])
        info = {**inputs.info, "proxy": str(gradient_model(ctx.model)), "loss": loss}
        if inputs.deferred and self.window >= len(inputs.pool_records):
            pool, _ = selection_gradients(texts, None, recipe, model=ctx.model, cache_dir=ctx.cache_dir,
                                          progress=ctx.progress, device=ctx.device)
            return inputs.but(pool=pool.array(), deferred=False, featurized_here=True,
                              info={**info, "pool": pool.info()})
        trainer = proxy_trainer(texts, recipe, model=ctx.model, cache_dir=ctx.cache_dir,
                                progress=ctx.progress, device=ctx.device)
        helpers = {**inputs.helpers, "proxy": trainer}
        if not inputs.deferred:
            return inputs.but(helpers=helpers)
        return inputs.but(pool=ProxyRows(len(inputs.pool_records), trainer.featurizer.dim), deferred=False,
                          helpers=helpers, info=info)

    def reads_seed(self) -> bool:
        """The seed only shuffles the pool into windows: without windows the greedy is deterministic."""
        return self.window is not None

    def _select(self, pool: Any, target: Any, ctx: Context, proxy: GradientProxy | None = None) -> Selection:
        """Select from ``pool`` (gradient features, or :class:`ProxyRows`: the proxy computes every window's);
        ``target`` is not read; ``proxy`` enables interleaving; ``ctx.progress`` shows a bar over the greedy
        steps (on stderr), whose ETA covers the proxy's gradients of each window."""
        if proxy is not None and not isinstance(proxy, GradientProxy):
            raise InputError(f"{self.name}: the proxy must have gradients(rows) and step(rows) methods")
        x = None if isinstance(pool, ProxyRows) else as_float_matrix(pool, "pool gradient features")
        n, d = pool.shape if x is None else x.shape
        if self.window is None or self.window >= n:
            windows = [np.arange(n)]
        else:
            order = np.random.default_rng(self.seed).permutation(n)
            windows = [order[i:i + self.window] for i in range(0, n, self.window)]
        quotas = window_quotas([len(w) for w in windows], int(self.budget))
        state = SelectedState(self.fisher, self.alpha, d, int(self.budget))
        schedule = ProxySchedule(proxy, self.T, self.name, d)
        rows: list[int] = []
        reasons: list[dict[str, Any]] = []
        scores: list[float] = []
        stopped: list[int] = []
        largest = max(len(m) for m in windows) * d * 4
        with progress_bar(ctx.progress, f"{self.name} greedy", sum(quotas), "steps") as advance, \
                blas_threads(1 if largest < SMALL_WINDOW_BYTES else None):
            for w, (members, quota) in enumerate(zip(windows, quotas, strict=True)):
                if quota == 0:
                    continue

                def on_pick(pick: Pick, members: np.ndarray = members, w: int = w) -> None:
                    rows.append(int(members[pick.local]))
                    scores.append(pick.gain - pick.conflict)
                    reasons.append({"gain": pick.gain, "conflict": pick.conflict, "cosine": pick.cosine,
                                    "step": len(rows), "window": w})
                    advance()
                    schedule.picked(rows[-1])

                g = schedule.window_features(x, members)
                _, early = greedy_window(g, quota, state, lam=self.lam, omega=self.omega, on_pick=on_pick)
                if early:
                    stopped.append(w)
        selection = Selection(indices=np.array(rows, dtype=np.int64), weights=np.ones(len(rows)),
                              scores=np.array(scores), reasons=reasons)
        selection.manifest["spice"] = {
            "fisher": self.fisher,
            "windows": len(windows),
            "selected": len(rows),
            "stopped_early_windows": stopped,
            "factor": ("dense" if state.factor.dense else "product") if state.factor is not None else "diagonal",
        }
        if proxy is not None:
            selection.manifest["proxy"] = schedule.info()
        return selection


@register
class FisherSFTSelector(SpiceSelector):
    """FisherSFT, the paper's main baseline: SPICE without the conflict penalty (``lam = 0``).

    Greedy maximisation of ``log det(I + alpha F_S)`` alone; every other parameter as in :class:`SpiceSelector`.
    """

    name = "fishersft"
    summary = "greedy log det(I + alpha F) gain of gradients (SPICE with lam = 0)"

    def __init__(self, budget: int, *, seed: int = 0, alpha: float = 1.0, fisher: str = "exact",
                 omega: float | None = None, window: int | None = None, T: int = 10) -> None:  # noqa: N803
        super().__init__(budget, seed=seed, alpha=alpha, lam=0.0, fisher=fisher, omega=omega, window=window, T=T)
