"""OPERA (Fang, Zhang, Ma et al., COLM 2026): data pruning for dense-retriever finetuning; here its static
pruning, a selector.

The training data are positive (query, document) pairs. A pair's score is the cosine of its query and document
under the base model.

- :class:`OperaStaticSelector` (``opera-sp``): keep ``budget`` pairs (OPERA's ``kept_pct``, 0.25 to 0.5, of the
  pool): the highest-scoring (``easy``), the lowest (``hard``) or a uniform random subset (``random``). A query
  whose positives are all pruned drops out of training; the manifest counts them.

Dynamic pruning (``opera-dp``) and the InfoBatch baseline remove nothing: they are samplers of the retriever's
training loop, in :mod:`tasksift.train.samplers`, with the formulas and ranking this selector shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasksift.features.embed import embed_texts
from tasksift.selectors.base import Context, Inputs, Selection, Selector
from tasksift.selectors.registry import register
from tasksift.train.samplers import MODES, group_queries, kept_positives, pair_cosines, static_keep, static_summary
from tasksift.util.errors import InputError
from tasksift.util.params import Options, Text


@dataclass
class PairFeatures:
    """The positive pairs a retriever trains on, as the base model sees them.

    ``query_vectors[i]`` and ``doc_vectors[i]`` embed pair ``i``'s query and document (L2-normalised);
    ``query_keys[i]`` says which query it belongs to (pairs with the same key share a query).
    """

    query_vectors: np.ndarray
    doc_vectors: np.ndarray
    query_keys: list[Any]

    def __post_init__(self) -> None:
        self.query_vectors = np.asarray(self.query_vectors, dtype=np.float32)
        self.doc_vectors = np.asarray(self.doc_vectors, dtype=np.float32)
        n = len(self.query_keys)
        if self.query_vectors.shape != self.doc_vectors.shape or self.query_vectors.ndim != 2 \
                or self.query_vectors.shape[0] != n:
            raise InputError(f"pair features disagree: query vectors {self.query_vectors.shape}, document vectors "
                             f"{self.doc_vectors.shape}, {n} query keys", fix="give one row and key per pair")

    def __len__(self) -> int:
        return len(self.query_keys)

    def cosines(self) -> np.ndarray:
        """Each pair's base cosine (rows are normalised here, so unnormalised input works too)."""
        return pair_cosines(self.query_vectors, self.doc_vectors)


@register
class OperaStaticSelector(Selector):
    """OPERA static pruning: keep ``budget`` positive pairs by their base-model cosine.

    ``fit(PairFeatures)`` (:meth:`prepare` builds them from the pool's ``query_field`` and ``doc_field``, embedded
    with the base model, and groups pairs by ``query_id_field`` when the records have it, else by query text). The
    budget is the number of pairs kept: ``--budget 50%`` is OPERA's ``kept_pct = 0.5``. Score: the pair's base
    cosine. Reason: the cosine, the query and how many of its positives survive. The manifest's ``opera``
    section counts the queries that lost all their positives.
    """

    name = "opera-sp"
    needs = "records"
    needs_target = False
    summary = "OPERA static pruning: keep the pairs with the highest (easy) / lowest (hard) base cosine, or random"
    parameters = {"mode": [Options(*MODES)], "query_field": [Text(nonempty=True)],
                  "doc_field": [Text(nonempty=True)], "query_id_field": [Text(), None]}

    def __init__(self, budget: int, *, seed: int = 0, mode: str = "easy", query_field: str = "query",
                 doc_field: str = "document", query_id_field: str | None = "query_id") -> None:
        super().__init__(budget, seed=seed)
        self._keep(locals())

    @classmethod
    def text_view(cls, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """A pair reads as its query, a line break and its document."""
        fields = {**cls.param_defaults(), **params}
        return {"template": f"{{{fields['query_field']}}}\n{{{fields['doc_field']}}}"}

    def prepare(self, inputs: Inputs, ctx: Context) -> Inputs:
        """The pool's pairs as :class:`PairFeatures`: its query and document fields embedded apart (cached, in
        this process), queries keyed by ``query_id_field`` when every record has it, else by their text."""
        self._validate_params()
        records = inputs.pool_records
        if records is None:
            raise InputError(f"method {self.name!r} reads query-document pairs",
                             fix="pass --pool records of pairs (fields such as query and document)")
        queries = records.with_text(text_field=self.query_field)
        docs = records.with_text(text_field=self.doc_field)
        keys: list[Any] = list(queries.texts)
        if self.query_id_field:
            rows = queries.take(np.arange(len(queries)))
            if all(self.query_id_field in r for r in rows):
                keys = [str(r[self.query_id_field]) for r in rows]
        q, d = (embed_texts(texts, model=ctx.model, cache_dir=ctx.cache_dir, progress=ctx.progress,
                            device=ctx.device) for texts in (queries.texts, docs.texts))
        return inputs.but(pool=PairFeatures(q.matrix(), d.matrix(), keys), target=None,
                          info={"kind": "pair embeddings", "queries": q.info(), "documents": d.info()})

    def _select(self, pool: Any, target: Any, ctx: Context) -> Selection:
        if not isinstance(pool, PairFeatures):
            raise InputError("opera-sp needs query and document vectors of every pair",
                             fix="call it through tasksift.select with a pool of query-document pairs, or fit "
                                 "it on PairFeatures")
        scores = pool.cosines()
        pair_query, keys = group_queries(pool.query_keys)
        kept = static_keep(scores, int(self.budget), self.mode, self.seed)
        survivors, totals = kept_positives(pair_query, len(keys), kept)
        reasons = [{"cosine": float(scores[i]), "query": str(keys[pair_query[i]]),
                    "query_positives_kept": int(survivors[pair_query[i]]),
                    "query_positives": int(totals[pair_query[i]])} for i in kept]
        selection = Selection(indices=kept, weights=np.ones(len(kept)), scores=scores[kept], reasons=reasons)
        selection.manifest["opera"] = static_summary(scores, kept, self.mode, survivors)
        return selection
