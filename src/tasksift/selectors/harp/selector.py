"""HARP: Hierarchical Active Region Pruning (Wang, Zhang, Tang, Gao, Cardie, Galhotra, 2026).

docs/methods.md, "HARP". Published: a three-level hierarchy over the pool (regions -> parents -> leaves); a small
adapter finetuned on representative leaves only and evaluated on a proxy set per domain, ``phi[g, d]`` = score
after training on leaf ``g`` minus the base score ``b_d``; empirical-Bayes estimates for the leaves not
measured; leaves ranked greedily under the conservative (HARP-C) or expansive (HARP-E) envelope, the best prefix
kept, the points capped at the budget.

Not published, our reconstruction (each in the module that implements it):

- features: the same sentence embeddings as the other selectors; hierarchy: recursive faiss k-means with a
  target leaf size, leaves balanced between ``min_leaf_size`` and ``max_leaf_size`` within their parent
  (:mod:`tasksift.selectors.harp.hierarchy`); representatives: the leaf nearest its parent's centroid,
  several per parent when the probe budget allows;
- probes: pluggable (:mod:`tasksift.selectors.harp.probes`): SmolLM2 + LoRA for ``probe_steps`` steps scored by option
  log-likelihood on the target examples, or a softmax classifier on frozen embeddings; per-item score the
  probability of the right option (``probe_metric="prob"``) or 0/1 accuracy;
- shrinkage: ``phi~ = w phi_rep(parent) + (1 - w) mu_d``, ``w = tau2_d / (tau2_d + s2_d)``, noise by
  bootstrap over proxy items (:mod:`tasksift.selectors.harp.shrinkage`);
- envelopes: ties and the best prefix as :mod:`tasksift.selectors.harp.envelope` states;
- points: the rows of the kept leaves ranked by cosine similarity to their nearest target example, cut at the
  budget. When the kept leaves hold fewer rows than the budget, ``fill=True`` (default) goes on down the greedy
  order past the prefix, leaf by leaf, so that every method of a comparison trains on the same number of
  examples; ``fill=False`` keeps the selection smaller than the budget, as the paper's HARP does;
- seeds: ``probe_seed`` seeds the k-means and the probes' training (``None``: the selection seed). Fixing it
  makes runs with different seeds share the hierarchy and every probe (the cache serves them).

``harp-exhaustive`` probes every leaf: the expensive reference, with the same shrinkage, envelope (``envelope``
parameter, conservative by default) and point rule. The number of probes (train-and-evaluate runs) is the
method's cost and is in the manifest under ``harp.probes``.

Score of a row: its cosine similarity to the nearest target example. Reason: ``leaf``, ``parent``, ``region``,
``effect`` (the leaf's estimated effect per domain), ``measured`` (probed or inferred), ``estimate`` (where
the estimate comes from: measured, parent, region or global), ``leaf_rank`` (its place in the greedy order) and
``in_prefix``. Side tables: ``hierarchy`` (the leaf of every pool row) and ``leaves`` (every leaf's size,
measured and estimated effects, greedy rank and gain).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from tasksift.index.search import normalize_rows
from tasksift.selectors.base import Context, Inputs, Selection, Selector, as_float_matrix
from tasksift.selectors.harp.envelope import ENVELOPES, greedy_order
from tasksift.selectors.harp.hierarchy import build_hierarchy
from tasksift.selectors.harp.probes import METRICS, ProbeRunner
from tasksift.selectors.harp.setup import PROBES, build_probe
from tasksift.selectors.harp.shrinkage import bootstrap_noise, shrink
from tasksift.selectors.registry import register
from tasksift.util.errors import InputError
from tasksift.util.params import Boolean, Interval, Options, Text


def nearest_target_similarity(x: np.ndarray, q: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Cosine similarity of every row of ``x`` to its nearest row of ``q``."""
    qn = normalize_rows(q)
    out = np.empty(x.shape[0], dtype=np.float64)
    for start in range(0, x.shape[0], chunk):
        out[start:start + chunk] = (normalize_rows(x[start:start + chunk]) @ qn.T).max(axis=1)
    return out


class _Harp(Selector):
    """Shared by ``harp-c``, ``harp-e`` and ``harp-exhaustive``; see the module docstring."""

    needs = "vectors"
    features = "embeddings"
    exhaustive: ClassVar[bool] = False
    default_envelope: ClassVar[str] = "c"
    parameters = {
        "leaf_size": [Interval(int, 1)], "leaves_per_parent": [Interval(int, 1)],
        "parents_per_region": [Interval(int, 1)], "probes": [Interval(int, 1), None], "probe": [Options(*PROBES)],
        "probe_steps": [Interval(int, 1)], "probe_batch_size": [Interval(int, 1)],
        "probe_lr": [Interval(float, 0, None, "neither")], "probe_max_length": [Interval(int, 1)],
        "probe_metric": [Options(*METRICS)], "probe_model": [Text(nonempty=True), None],
        "probe_seed": [Interval(int, 0), None], "proxy_options": [Interval(int, 2)], "domain_field": [Text()],
        "prompt_template": [Text(nonempty=True)], "answer_field": [Text(nonempty=True)], "options_field": [Text()],
        "bootstrap": [Interval(int, 1)], "fill": [Boolean()], "envelope": [Options(*ENVELOPES), None],
        "min_leaf_size": [Interval(int, 1), None], "max_leaf_size": [Interval(int, 1), None],
    }

    def __init__(self, budget: int, *, seed: int = 0, leaf_size: int = 100, leaves_per_parent: int = 8,
                 parents_per_region: int = 8, probes: int | None = None, probe: str = "lm",
                 probe_steps: int = 4, probe_batch_size: int = 8, probe_lr: float = 3e-4,
                 probe_max_length: int = 128, probe_metric: str = "prob", probe_model: str | None = None,
                 probe_seed: int | None = None, proxy_options: int = 4, domain_field: str = "domain",
                 prompt_template: str = "{instruction}\n{input}\n", answer_field: str = "output",
                 options_field: str = "options", bootstrap: int = 200, fill: bool = True,
                 envelope: str | None = None, min_leaf_size: int | None = None,
                 max_leaf_size: int | None = None) -> None:
        super().__init__(budget, seed=seed)
        self._keep(locals())

    def prepare(self, inputs: Inputs, ctx: Context) -> Inputs:
        """Build the probe the leaves are trained with, from the pool's and the target's records."""
        self._validate_params()
        probe = build_probe(self, inputs.pool_records, inputs.target_records, inputs.pool, inputs.target,
                            cache_dir=ctx.cache_dir, progress=ctx.progress, device=ctx.device)
        return inputs.but(helpers={**inputs.helpers, "probe": probe})

    # -- settings ------------------------------------------------------------------------------------------
    def _envelope(self) -> str:
        env = self.envelope if self.envelope is not None else self.default_envelope
        if env not in ENVELOPES:
            raise InputError(f"{self.name}: unknown envelope {env!r}", fix="use envelope=c or envelope=e")
        if not self.exhaustive and self.envelope is not None and env != self.default_envelope:
            raise InputError(f"{self.name} always uses envelope {self.default_envelope!r}",
                             fix=f"use harp-{env} instead")
        return env

    # -- selection -----------------------------------------------------------------------------------------
    def _select(self, pool: Any, target: Any, ctx: Context, probe: ProbeRunner | None = None) -> Selection:
        """Select from ``pool`` (embeddings) for ``target`` (embeddings); ``probe`` trains and scores leaves."""
        if not isinstance(probe, ProbeRunner):
            raise InputError(f"{self.name} needs a probe to train on leaves",
                             fix="use tasksift.select (it builds one), or pass fit(..., probe=ProbeRunner(...))")
        envelope = self._envelope()
        runner = probe
        x = as_float_matrix(pool, "pool vectors")
        q = as_float_matrix(target, "target vectors")
        seed = self.probe_seed if self.probe_seed is not None else self.seed
        h = build_hierarchy(x, leaf_size=int(self.leaf_size), leaves_per_parent=int(self.leaves_per_parent),
                            parents_per_region=int(self.parents_per_region), seed=int(seed),
                            min_leaf_size=self.min_leaf_size, max_leaf_size=self.max_leaf_size)
        members = h.members()
        probed = np.arange(h.n_leaves) if self.exhaustive else h.representatives(self.probes)

        item_domains, names = runner.item_domains, runner.domain_names
        measured, noise, base, phi_measured = self._measure(runner, [members[g] for g in probed], seed)
        est = shrink(phi_measured, probed, h.leaf_parent, h.parent_region, noise)
        greedy = greedy_order(est.effects, base, envelope)

        closeness = nearest_target_similarity(x, q)
        rows, leaves_used = self._points(h, members, greedy, closeness)
        kept = set(int(g) for g in greedy.kept)
        rank_of = {int(g): i + 1 for i, g in enumerate(greedy.order)}
        idx = np.array(rows, dtype=np.int64)

        def effect(g: int) -> dict[str, float]:
            return {name: float(est.effects[g, d]) for d, name in enumerate(names)}

        reasons = []
        for r in rows:
            g = int(h.leaf[r])
            reasons.append({"leaf": g, "parent": int(h.leaf_parent[g]), "region": int(h.region[r]),
                            "effect": effect(g), "measured": bool(est.measured[g]), "estimate": est.source[g],
                            "leaf_rank": rank_of[g], "in_prefix": g in kept})
        selection = Selection(indices=idx, weights=np.ones(len(idx)), scores=closeness[idx], reasons=reasons)
        selection.tables["hierarchy"] = pa.table({
            "row": pa.array(np.arange(x.shape[0]), type=pa.int64()),
            "region": pa.array(h.region, type=pa.int64()),
            "parent": pa.array(h.parent, type=pa.int64()),
            "leaf": pa.array(h.leaf, type=pa.int64()),
        })
        selection.tables["leaves"] = self._leaf_table(h, est, greedy, probed, phi_measured, names, leaves_used)
        selection.manifest["harp"] = {
            "envelope": envelope, "exhaustive": self.exhaustive, "probes": int(len(probed)),
            "probes_trained_now": measured.trained, "probes_from_cache": measured.cached,
            "probe_seconds": round(measured.seconds, 3), "hierarchy": h.info(), "domains": names,
            "proxy_items": int(len(item_domains)), "base": base.tolist(), "mu": est.mu.tolist(),
            "tau2": est.tau2.tolist(), "noise": est.noise.tolist(), "start_utility": greedy.start,
            "best_utility": float(greedy.totals[greedy.prefix - 1]) if greedy.prefix else greedy.start,
            "prefix_leaves": [int(g) for g in greedy.kept], "leaves_used": [int(g) for g in leaves_used],
            "rows_from_prefix": int(sum(1 for r in reasons if r["in_prefix"])), "probe": runner.describe(),
        }
        return selection

    def _measure(self, runner: ProbeRunner, leaves: list[np.ndarray], seed: int
                 ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
        """Train and score a probe on each of ``leaves``: the runner's result, the bootstrap evaluation noise per
        domain, the base score per domain and each leaf's measured effect per domain (score after training
        minus the base score, averaged over the domain's proxy items)."""
        item_domains = runner.item_domains
        n_domains = len(runner.domain_names)
        base_items = runner.base()
        measured = runner.measure(leaves)
        diffs = measured.scores - base_items[None, :]
        counts = np.bincount(item_domains, minlength=n_domains)
        if np.any(counts == 0):
            raise InputError(f"{self.name}: a domain of the proxy set has no items")

        def per_domain(values: np.ndarray) -> np.ndarray:  # (..., items) -> (..., domains)
            sums = np.zeros((*values.shape[:-1], n_domains))
            for d in range(n_domains):
                sums[..., d] = values[..., item_domains == d].sum(axis=-1)
            return sums / counts

        noise = bootstrap_noise(diffs, item_domains, n_domains, rounds=int(self.bootstrap), seed=int(seed))
        return measured, noise, per_domain(base_items), per_domain(diffs)

    def _points(self, h: Any, members: list[np.ndarray], greedy: Any, closeness: np.ndarray
                ) -> tuple[list[int], list[int]]:
        """The chosen rows and the leaves they come from: the kept leaves' rows by closeness to the target, then
        (``fill``) the rows of the following leaves of the greedy order, cut at the budget."""
        sizes = h.leaf_sizes()
        leaves_used = list(greedy.kept)
        if self.fill:
            for g in greedy.order[greedy.prefix:]:
                if sizes[leaves_used].sum() >= self.budget:
                    break
                leaves_used.append(int(g))
        kept = set(int(g) for g in greedy.kept)
        blocks = [np.concatenate([members[g] for g in leaves_used if g in kept] or [np.zeros(0, np.int64)]),
                  np.concatenate([members[g] for g in leaves_used if g not in kept] or [np.zeros(0, np.int64)])]
        rows: list[int] = []
        for block in blocks:
            rows.extend(int(r) for r in block[np.lexsort((block, -closeness[block]))])
        return rows[: int(self.budget)], leaves_used

    @staticmethod
    def _leaf_table(h: Any, est: Any, greedy: Any, probed: np.ndarray, phi_measured: np.ndarray,
                    names: list[str], leaves_used: list[int]) -> pa.Table:
        n = h.n_leaves
        rank = np.empty(n, dtype=np.int64)
        gain = np.empty(n, dtype=np.float64)
        rank[greedy.order] = np.arange(1, n + 1)
        gain[greedy.order] = greedy.gains
        cols: dict[str, Any] = {
            "leaf": np.arange(n), "parent": h.leaf_parent, "region": h.parent_region[h.leaf_parent],
            "size": h.leaf_sizes(), "measured": est.measured, "estimate": est.source, "greedy_rank": rank,
            "gain": gain, "in_prefix": np.isin(np.arange(n), greedy.kept),
            "used": np.isin(np.arange(n), np.array(leaves_used, dtype=np.int64)),
        }
        for d, name in enumerate(names):
            phi = np.full(n, math.nan)
            phi[probed] = phi_measured[:, d]
            cols[f"phi_measured[{name}]"] = phi
            cols[f"effect[{name}]"] = est.effects[:, d]
        return pa.table({k: pa.array(v) for k, v in cols.items()})


@register
class HarpCSelector(_Harp):
    """HARP-C: probes on representative leaves, conservative envelope (only the best leaf per domain counts)."""

    name = "harp-c"
    summary = "probe representative leaves, empirical-Bayes effects, greedy under the conservative envelope"
    default_envelope = "c"


@register
class HarpESelector(_Harp):
    """HARP-E: probes on representative leaves, expansive envelope (leaf effects add up)."""

    name = "harp-e"
    summary = "probe representative leaves, empirical-Bayes effects, greedy under the expansive envelope"
    default_envelope = "e"


@register
class HarpExhaustiveSelector(_Harp):
    """HARP with every leaf probed: the expensive reference (``envelope`` c or e, c by default)."""

    name = "harp-exhaustive"
    summary = "HARP with every leaf probed (the expensive reference)"
    exhaustive = True
    default_envelope = "c"
