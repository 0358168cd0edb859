"""The contract every selector follows, and what the framework hands it.

A selector is an estimator in the scikit-learn sense: its parameters are the arguments of ``__init__``
(stored under the same names) and are declared, with what each accepts, in ``parameters``
(:mod:`tasksift.util.params`); :meth:`Selector.fit` checks them, runs the selection on the features it is
given (arrays or texts, never files or models) and leaves the result in attributes that end with an underscore
(``selection_``, ``indices_``, ``weights_``, ``scores_``).

:func:`tasksift.select` runs every method the same way: load -> featurize (by the class's ``needs`` and
``features``) -> :meth:`Selector.prepare` -> :meth:`Selector.fit` -> write. ``prepare`` is where a method that
needs more than features (a probe model, a proxy trainer, retrieval pairs) builds it from the records, with the
services of the :class:`Context`; what it returns is what ``fit`` receives.
"""

from __future__ import annotations

import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from tasksift.features.embed import embed_texts
from tasksift.index.searcher import LocalSearch, Search
from tasksift.records import RecordSet, check_vectors
from tasksift.selection import Selection
from tasksift.util.errors import InputError
from tasksift.util.params import Constraint, Interval, convert_params

Needs = Literal["vectors", "texts", "count", "records"]
#: texts -> one embedding row per text
Embed = Callable[[Sequence[str]], np.ndarray]


@dataclass
class Context:
    """The services a selector receives from the framework (the engine decides where they run).

    ``search``: neighbour search over the pool (:class:`tasksift.index.searcher.Search`; in this process by
    default); ``embed``: texts -> embeddings with the run's model and cache (``None``: in this process);
    ``cache_dir``, ``model``, ``features`` (the feature settings given), ``progress``: the run's settings."""

    search: Search = field(default_factory=LocalSearch)
    embed: Embed | None = None
    cache_dir: str | Path | None = None
    model: str | None = None
    features: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = False
    device: Any = None

    def embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``: through ``embed`` when given, else cached and computed in this process."""
        if self.embed is not None:
            return self.embed(texts)
        return embed_texts(texts, model=self.model, cache_dir=self.cache_dir, progress=self.progress,
                           device=self.device).matrix()


@dataclass
class Inputs:
    """What a selector reads: ``pool`` and ``target`` as ``fit`` takes them, the records they came from
    (``None`` for bare vectors), whether the features were computed here from those records, whether the pool's
    were left for :meth:`Selector.prepare` to compute (``deferred``: ``pool`` is then the records,
    :meth:`Selector.defers_pool_features`), a description of the features for the manifest, and ``helpers``:
    further keyword arguments of ``fit``."""

    pool: Any
    target: Any = None
    pool_records: RecordSet | None = None
    target_records: RecordSet | None = None
    featurized_here: bool = False
    deferred: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    helpers: dict[str, Any] = field(default_factory=dict)

    def but(self, **changes: Any) -> Inputs:
        """A copy with ``changes``."""
        return replace(self, **changes)


class Selector(ABC):
    """Base class of every selector. Subclasses declare ``name`` and ``needs`` and implement ``_select``.

    ``needs`` says what the framework featurizes for ``fit``: ``"vectors"`` (float arrays, one row per
    example: ``features`` says which), ``"texts"`` (sequences of strings), ``"count"`` (anything with a length;
    the target is ignored) or ``"records"`` (the record sets themselves, turned into what ``fit`` reads by
    :meth:`prepare`). ``parameters`` declares every ``__init__`` parameter but ``budget``
    (:mod:`tasksift.util.params`); a subclass adds its own to those of its bases.
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
    #: budgets above the pool's size are allowed (sampling with replacement)
    allows_budget_above_pool: ClassVar[bool] = False
    #: what each parameter accepts; merged with the declarations of the base classes
    parameters: ClassVar[dict[str, list[Constraint]]] = {"seed": [Interval(int, 0, 2**63 - 1)]}

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

    @classmethod
    def declarations(cls) -> dict[str, list[Constraint]]:
        """What each parameter accepts, from ``parameters`` of this class and its bases."""
        out: dict[str, list[Constraint]] = {}
        for klass in reversed(cls.__mro__):
            out.update(getattr(klass, "parameters", None) or {})
        return {name: out[name] for name in cls.param_defaults()}

    @classmethod
    def convert_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` (text from the command line or Python values) checked and typed by the declarations."""
        return convert_params(cls.name, cls.declarations(), params)

    @classmethod
    def text_view(cls, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The text view (``text_field`` / ``template``) to read records with when the user gives none."""
        return None

    def _keep(self, values: Mapping[str, Any]) -> None:
        """Store the arguments of a subclass's ``__init__`` (its ``locals()``) under their names."""
        for name, value in values.items():
            if name not in ("self", "budget", "seed", "__class__"):
                setattr(self, name, value)

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_defaults()}

    @classmethod
    def defers_pool_features(cls, params: Mapping[str, Any]) -> bool:
        """Whether, with ``params``, a ``"vectors"`` selector that reads no target computes its pool features
        itself, row by row as it reads them, when ``tasksift.select`` has the pool's records: the framework then
        computes none up front and :meth:`prepare` receives the records (``Inputs.deferred``) and returns what
        ``fit`` reads. SPICE with windows and a proxy does this: every window's gradients come from the proxy as
        the window starts, so a first pass over the whole pool would be read once, for the first window only."""
        return False

    def reads_seed(self) -> bool:
        """Whether the selection depends on ``seed`` with these parameters. ``False`` promises that the same
        features and parameters select the same records at every seed, so a comparison over seeds may make the
        selection once and train it at each seed. The default is the safe answer."""
        return True

    def _validate_params(self) -> None:
        for name, value in self.convert_params(self.get_params()).items():
            setattr(self, name, value)

    # -- preparing -----------------------------------------------------------------------------------------
    def prepare(self, inputs: Inputs, ctx: Context) -> Inputs:
        """Turn the featurized inputs into what :meth:`fit` reads, building any helper ``fit`` needs from the
        records (returned in ``Inputs.helpers``). The default reads the features as they are."""
        return inputs

    # -- fitting -------------------------------------------------------------------------------------------
    def fit(self, pool: Any, target: Any = None, *, ctx: Context | None = None, **helpers: Any) -> Selector:
        """Select from ``pool`` for ``target``. ``ctx``: the framework's services (default: everything in this
        process); ``helpers``: what the method's ``_select`` takes beyond the features (see :meth:`prepare`)."""
        self._validate_params()
        n = len(pool)
        if n == 0:
            raise InputError("the pool is empty", fix="give a pool with at least one example")
        if self.needs != "count" and self.needs_target and (target is None or len(target) == 0):
            raise InputError("the target set is empty", fix="give at least one target example")
        if not isinstance(self.budget, int | np.integer) or self.budget <= 0:
            raise InputError(f"budget {self.budget!r} must be a positive number of examples")
        if self.budget > n and not self.allows_budget_above_pool:
            raise InputError(f"budget {self.budget} is larger than the pool ({n} examples)",
                             fix=f"ask for at most {n}")
        t0 = time.perf_counter()
        selection = self._select(pool, target, ctx if ctx is not None else Context(), **helpers)
        self.fit_seconds_ = time.perf_counter() - t0
        selection.manifest.setdefault("method", self.name)
        selection.manifest.setdefault("params", {"budget": int(self.budget), **self.get_params()})
        self.selection_ = selection
        self.indices_ = selection.indices
        self.weights_ = selection.weights
        self.scores_ = selection.scores
        return self

    @abstractmethod
    def _select(self, pool: Any, target: Any, ctx: Context) -> Selection:
        """Return the Selection for ``pool`` (and ``target``); ids and the manifest are filled by callers."""


def as_float_matrix(x: Any, what: str) -> np.ndarray:
    """A C-contiguous float32 matrix, checked for shape and finite values (chunk by chunk)."""
    return np.ascontiguousarray(check_vectors(x, what))


def sequence_len(x: Sequence[Any] | np.ndarray) -> int:
    return int(x.shape[0]) if isinstance(x, np.ndarray) else len(x)
