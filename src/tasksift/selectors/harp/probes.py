"""HARP's probes: train a proxy model on one leaf, score it item by item on the proxy set; cached and resumable.

A probe model is anything with the :class:`Probe` methods: ``describe()`` (JSON settings that decide its
results: the cache key), ``domain_names`` and ``item_domains`` (the domain of each proxy item), ``base_scores()``
(per-item scores of the untrained model) and ``leaf_scores(rows)`` (per-item scores after training on the pool
rows of one leaf). Two are built in:

- :class:`tasksift.selectors.harp.lm_probe.LMProbe`: SmolLM2-135M-Instruct with LoRA trained a few steps on the leaf and
  scored like the evaluation harness scores (option log-likelihood), the real one;
- :class:`EmbeddingClassifierProbe`: a softmax classifier over frozen embeddings, trained on the leaf's rows
  whose answer is one of the proxy's answers; a cheap surrogate (tests, quick looks).

:class:`ProbeRunner` puts a probe behind the feature cache (:mod:`tasksift.features.cache`): each leaf is one
shard of one row, keyed by the content of its member texts, so a rerun (or another HARP variant on the same
hierarchy) never retrains a finished leaf, and a killed run loses at most the leaf it was training.

Per-item scores (our choice; the paper does not say how a probe is scored): ``metric="prob"`` is the
probability of the right option under a softmax over the options' scores (a smooth accuracy, in ``[0, 1]``),
``metric="accuracy"`` is 1 when the right option scores highest (the harness's accuracy per item).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tasksift.features.cache import FeatureCache, shard_key
from tasksift.records import domain_index
from tasksift.util.errors import InputError

METRICS = ("prob", "accuracy")
#: the cache's kind directory for probe results
CACHE_KIND = "harp-probes"


@runtime_checkable
class Probe(Protocol):
    """What HARP needs of a probe model (see the module docstring)."""

    domain_names: list[str]
    item_domains: np.ndarray

    def describe(self) -> dict[str, Any]:
        """JSON-ready settings that decide every score (model, training, proxy set): the cache key."""
        ...

    def base_scores(self) -> np.ndarray:
        """Per proxy item: the score of the model before any training."""
        ...

    def leaf_scores(self, rows: np.ndarray) -> np.ndarray:
        """Per proxy item: the score after training on the pool rows ``rows``."""
        ...


def option_item_scores(scores: Sequence[np.ndarray], correct: Sequence[int], metric: str) -> np.ndarray:
    """Per item: softmax probability of the right option (``prob``) or 1/0 for it scoring highest."""
    if metric not in METRICS:
        raise InputError(f"harp: unknown probe metric {metric!r}", fix=f"use one of {', '.join(METRICS)}")
    out = np.empty(len(scores), dtype=np.float64)
    for i, (s, c) in enumerate(zip(scores, correct, strict=True)):
        s = np.asarray(s, dtype=np.float64)
        if metric == "accuracy":
            out[i] = float(int(np.argmax(s)) == int(c))
        else:
            z = np.exp(s - s.max())
            out[i] = float(z[c] / z.sum())
    return out


def array_digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class Measured:
    """Per-item scores of some leaves, and how many were trained now or found in the cache."""

    scores: np.ndarray
    trained: int
    cached: int
    seconds: float


class ProbeRunner:
    """A probe behind the feature cache: ``base()`` and ``measure(leaves)`` compute only what is not stored.

    ``pool_texts`` are the pool rows' texts (any stable per-row content): a leaf's cache key hashes its members'
    texts in row order together with the probe's ``describe()``.
    """

    def __init__(self, probe: Probe, pool_texts: Sequence[str], *, cache_dir: str | Path | None = None,
                 progress: bool = False) -> None:
        if not isinstance(probe, Probe):
            raise InputError("harp: the probe needs describe(), base_scores(), leaf_scores(rows), domain_names "
                             "and item_domains")
        self.probe = probe
        self.pool_texts = pool_texts
        self.progress = progress
        self.cache = FeatureCache(cache_dir, CACHE_KIND, {"probe": probe.describe(), "shard_size": 1})

    @property
    def domain_names(self) -> list[str]:
        return list(self.probe.domain_names)

    @property
    def item_domains(self) -> np.ndarray:
        return np.asarray(self.probe.item_domains, dtype=np.int64)

    def describe(self) -> dict[str, Any]:
        return {**self.probe.describe(), "cache_dir": str(self.cache.dir)}

    def base(self) -> np.ndarray:
        """Per-item scores of the untrained model (cached like a leaf, under the key ``base``)."""
        got = self.cache.compute(["harp:base"], lambda _: self.probe.base_scores()[None, :], progress=False)
        return got.matrix()[0].astype(np.float64)

    def leaf_key(self, rows: np.ndarray) -> str:
        return "harp:leaf:" + shard_key([self.pool_texts[int(i)] for i in np.sort(rows)])

    def measure(self, leaves: Sequence[np.ndarray]) -> Measured:
        """Per-item scores after training on each leaf's rows (one row of the result per leaf)."""
        keys = [self.leaf_key(rows) for rows in leaves]
        rows_of = dict(zip(keys, (np.sort(np.asarray(r, dtype=np.int64)) for r in leaves), strict=True))

        def run(chunk: list[str]) -> np.ndarray:
            return np.stack([self.probe.leaf_scores(rows_of[k]) for k in chunk])

        got = self.cache.compute(keys, run, progress=self.progress, desc="harp probes (leaves)")
        return Measured(scores=got.matrix().astype(np.float64), trained=got.n_computed, cached=got.n_reused,
                        seconds=got.compute_seconds)


class EmbeddingClassifierProbe:
    """The cheap surrogate probe: softmax regression on frozen embeddings, trained from zero on one leaf.

    Classes are the distinct proxy answers; a leaf row trains the classifier when its answer is one of them
    (other rows teach it nothing). The untrained model predicts uniformly. ``steps`` full-batch gradient steps
    at learning rate ``lr`` with an L2 penalty ``l2``; deterministic.
    """

    def __init__(self, pool_vectors: np.ndarray, pool_answers: Sequence[str], proxy_vectors: np.ndarray,
                 proxy_answers: Sequence[str], proxy_domains: Sequence[Any] | None = None, *, steps: int = 50,
                 lr: float = 1.0, l2: float = 1e-3, metric: str = "prob") -> None:
        self.x = np.asarray(pool_vectors, dtype=np.float64)
        self.q = np.asarray(proxy_vectors, dtype=np.float64)
        self.classes = sorted(set(map(str, proxy_answers)))
        if len(self.classes) < 2:
            raise InputError("harp: the embedding-classifier probe needs at least two distinct proxy answers")
        lookup = {c: i for i, c in enumerate(self.classes)}
        self.pool_y = np.array([lookup.get(str(a), -1) for a in pool_answers], dtype=np.int64)
        self.proxy_y = np.array([lookup[str(a)] for a in proxy_answers], dtype=np.int64)
        self.domain_names, self.item_domains = domain_index(proxy_domains, len(self.proxy_y), who="harp", sort=True,
                                                            none_is_missing=True)
        self.steps, self.lr, self.l2, self.metric = int(steps), float(lr), float(l2), metric
        option_item_scores([], [], metric)  # checks the metric name

    def describe(self) -> dict[str, Any]:
        return {"probe": "embedding-classifier", "steps": self.steps, "lr": self.lr, "l2": self.l2,
                "metric": self.metric, "classes": self.classes, "domains": self.domain_names,
                "data": array_digest(self.x, self.pool_y, self.q, self.proxy_y, self.item_domains)}

    def _scores(self, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        logits = self.q @ w + b
        return option_item_scores(list(logits), list(self.proxy_y), self.metric)

    def base_scores(self) -> np.ndarray:
        k = len(self.classes)
        return self._scores(np.zeros((self.q.shape[1], k)), np.zeros(k))

    def leaf_scores(self, rows: np.ndarray) -> np.ndarray:
        k = len(self.classes)
        rows = np.asarray(rows, dtype=np.int64)
        rows = rows[self.pool_y[rows] >= 0]
        w, b = np.zeros((self.x.shape[1], k)), np.zeros(k)
        if len(rows):
            x, y = self.x[rows], np.eye(k)[self.pool_y[rows]]
            for _ in range(self.steps):
                z = x @ w + b
                p = np.exp(z - z.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
                grad = (p - y) / len(rows)
                w -= self.lr * (x.T @ grad + self.l2 * w)
                b -= self.lr * grad.sum(axis=0)
        return self._scores(w, b)
