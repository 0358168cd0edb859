"""The selection contract shared by every selector.

A selector is an estimator in the scikit-learn sense: its parameters are the arguments of ``__init__``
(stored under the same names), :meth:`Selector.fit` runs the selection on features it is given (arrays or
texts, never files or models) and leaves the result in attributes that end with an underscore
(``selection_``, ``indices_``, ``weights_``, ``scores_``).

A :class:`Selection` is the output every method writes the same way (DESIGN.md, "The output contract"):
one row per chosen example with its row position in the pool, id, weight, score, rank and a reason.

Weights are training counts: how many times to train on the example. For methods that pick each example at
most once they are all 1; for sampling with replacement (TSDS's multinomial draws) they are the draw counts.
``weights.sum()`` therefore equals the budget for every method.
"""

from __future__ import annotations

import inspect
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa

from tasksift.util.errors import InputError

Needs = Literal["vectors", "texts", "count", "pairs"]


@dataclass
class Selection:
    """The chosen examples in rank order.

    ``indices`` are row positions in the pool; ``ids`` are the records' stable ids (row numbers as strings
    when the pool came as bare vectors). ``reasons`` holds one JSON-serialisable dict per row. ``tables``
    holds side tables a method wants written next to the selection (for example TSDS's probability of every
    candidate with non-zero mass), each written as ``<name>.parquet``.
    """

    indices: np.ndarray
    weights: np.ndarray
    scores: np.ndarray
    reasons: list[dict[str, Any]]
    ids: list[str] | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pa.Table] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.scores = np.asarray(self.scores, dtype=np.float64)
        n = len(self.indices)
        if not (len(self.weights) == len(self.scores) == len(self.reasons) == n):
            raise ValueError("indices, weights, scores and reasons must have one entry per chosen example")
        if len(np.unique(self.indices)) != n:
            raise ValueError("a Selection lists each chosen example once; repeat it through its weight")
        if self.ids is None:
            self.ids = [str(i) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def ranks(self) -> np.ndarray:
        return np.arange(1, len(self.indices) + 1, dtype=np.int64)

    def to_arrow(self) -> pa.Table:
        reasons = pa.array([json.dumps(r, sort_keys=True) for r in self.reasons], type=pa.string())
        return pa.table({
            "id": pa.array(self.ids, type=pa.string()),
            "row": pa.array(self.indices, type=pa.int64()),
            "weight": pa.array(self.weights, type=pa.float64()),
            "score": pa.array(self.scores, type=pa.float64()),
            "rank": pa.array(self.ranks, type=pa.int64()),
            "reason": reasons,
        })

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        df = self.to_arrow().to_pandas()
        df["reason"] = self.reasons
        return df

    def save(self, out_dir: str | Path, records: Any = None) -> dict[str, Path]:
        """Write ``selection.parquet``, side tables, ``manifest.json`` and, given the pool's records, the
        chosen records (``selected.jsonl``, or ``selected.parquet`` for a parquet pool). Each file is written
        under a temporary name and renamed when complete."""
        from tasksift.selection.writers import write_selection_outputs

        return write_selection_outputs(self, Path(out_dir), records)


class Selector(ABC):
    """Base class of every selector. Subclasses declare ``name`` and ``needs`` and implement ``_select``.

    ``needs`` says what ``fit`` receives as ``pool`` and ``target``: ``"vectors"`` (float arrays, one row
    per example), ``"texts"`` (sequences of strings), ``"count"`` (anything with a length; the target is
    ignored) or ``"pairs"`` (query and document vectors of retrieval pairs; the target is ignored).
    """

    name: ClassVar[str]
    needs: ClassVar[Needs] = "vectors"
    #: which features ``tasksift.select`` computes from text for a ``"vectors"`` selector: sentence
    #: ``"embeddings"`` or per-example ``"gradients"`` of a proxy model
    features: ClassVar[str] = "embeddings"
    #: one line for ``tasksift methods``
    summary: ClassVar[str] = ""
    #: False for selectors that read no target (SPICE selects for the proxy's own training signal):
    #: ``fit`` then accepts ``target=None`` and ``tasksift.select`` does not featurize a target
    needs_target: ClassVar[bool] = True
    #: feature settings ``tasksift.select`` starts from (``features=`` / ``--feature`` override them)
    feature_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, budget: int, *, seed: int = 0) -> None:
        self.budget = budget
        self.seed = seed

    # -- scikit-learn style parameters ---------------------------------------------------------------------
    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """Every parameter but ``budget`` with its default, read from ``__init__``'s signature."""
        out: dict[str, Any] = {}
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name in ("self", "budget") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            out[p.name] = None if p.default is inspect.Parameter.empty else p.default
        return out

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_defaults()}

    # -- fitting -------------------------------------------------------------------------------------------
    def fit(self, pool: Any, target: Any = None, *, search: Any = None) -> Selector:
        """Select from ``pool`` for ``target``. ``search``: the neighbour-search helper of the engine that runs
        the selection (:meth:`tasksift.engine.Engine.search`; ``None``: faiss in this process), for selectors
        that search neighbours; it changes where the search runs, never its result."""
        self.search_backend = search
        n = len(pool)
        if n == 0:
            raise InputError("the pool is empty", fix="give a pool with at least one example")
        if self.needs != "count" and self.needs_target and (target is None or len(target) == 0):
            raise InputError("the target set is empty", fix="give at least one target example")
        if not isinstance(self.budget, int | np.integer) or self.budget <= 0:
            raise InputError(f"budget {self.budget!r} must be a positive number of examples")
        if self.budget > n and not getattr(self, "allows_budget_above_pool", False):
            raise InputError(f"budget {self.budget} is larger than the pool ({n} examples)",
                             fix=f"ask for at most {n}")
        t0 = time.perf_counter()
        selection = self._select(pool, target)
        self.fit_seconds_ = time.perf_counter() - t0
        selection.manifest.setdefault("method", self.name)
        selection.manifest.setdefault("params", {"budget": int(self.budget), **self.get_params()})
        self.selection_ = selection
        self.indices_ = selection.indices
        self.weights_ = selection.weights
        self.scores_ = selection.scores
        return self

    @abstractmethod
    def _select(self, pool: Any, target: Any) -> Selection:
        """Return the Selection for ``pool`` (and ``target``); ids and the manifest are filled by callers."""


def as_float_matrix(x: Any, what: str) -> np.ndarray:
    """A C-contiguous float32 matrix, checked for shape and finite values (chunk by chunk)."""
    from tasksift.records.vectors import check_vectors

    return np.ascontiguousarray(check_vectors(x, what))


def sequence_len(x: Sequence[Any] | np.ndarray) -> int:
    return int(x.shape[0]) if isinstance(x, np.ndarray) else len(x)
