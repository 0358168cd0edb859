"""A MiniLM bi-encoder finetuned on (query, positive document) pairs with InfoNCE, in-batch negatives and one
mined hard negative per query.

One shared encoder (mean pooling, L2-normalised) embeds queries and documents. For a batch of B pairs the
candidates of every query are the B positives of the batch plus the batch's hard negatives; the logits are
``cos(q_i, d_j) / temperature`` (temperature 0.02, OPERA's) and the loss is the cross-entropy of picking
``d_i`` for ``q_i``. A candidate that is a positive of ``q_i`` (any of its positives in the training pairs)
is masked out rather than used as a negative.

Hard negatives (:func:`mine_hard_negatives`): the base model embeds every distinct query and training document,
an exact faiss inner-product search ranks the documents for each query, and one document is drawn (seeded)
from ranks 10 to 100 among those that are not the query's positives. Only the training pairs' documents are
mined, so no test document enters training.

The sampler hook: :func:`finetune_retriever` draws batches of pair positions from a
:class:`~tasksift.train.common.Sampler` and, after every forward pass, calls
``sampler.observe(pair_positions, positive_cosines)`` with the live cosine of each pair of the batch. The
default sampler makes plain shuffled passes; a dynamic-pruning sampler (OPERA) keeps per-pair scores from those
cosines and decides which pairs the next pass visits. A sampler whose ``signal`` is ``"loss"`` (InfoBatch)
receives each pair's InfoNCE loss instead, and ``sampler.loss_weights(pair_positions)``, when it returns
weights, scales each pair's loss. :class:`PairTrainer` puts these together for a task's pairs (the evaluation
harness and ``tasksift retriever train`` both train through it).

Evaluation: the corpus and the queries are encoded, and an exact inner-product index over the normalised
document vectors (:func:`tasksift.index.build_index`, ``flat``) returns each query's ranking.

Training and encoding run where the encoder is (:class:`PairTrainer` puts it on its ``device``): float32 on the
CPU, bfloat16 autocast on a GPU that supports it; the searches (hard negatives, evaluation) run on the CPU.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasksift.index import build_index
from tasksift.train import common
from tasksift.train.models import Encoder, load_encoder
from tasksift.train.resolve import model_fingerprint
from tasksift.train.samplers import PRUNING, group_queries, make_sampler, pair_cosines, static_pruning
from tasksift.util.errors import InputError
from tasksift.util.io import atomic_path
from tasksift.util.progress import progress_bar


@dataclass
class RetrieverSettings(common.TrainSettings):
    """How every selection of a comparison is trained (fp32, seeded)."""

    batch_size: int = 32
    lr: float = 3e-5
    #: InfoNCE's temperature over the in-batch and hard-negative similarities
    temperature: float = 0.02
    weight_decay: float = 0.01
    max_length: int = 128
    eval_batch_size: int = 64
    #: one mined hard negative per query (ranks ``negatives_from``..``negatives_to`` under the base model)
    hard_negatives: bool = True
    negatives_from: int = 10
    negatives_to: int = 100
    #: how training visits the pairs: none | static | dynamic | infobatch (see tasksift.train.samplers)
    pruning: str = "none"
    #: share of pairs static pruning keeps (OPERA's kept_pct)
    kept_pct: float = 0.5


def false_negative_mask(query_keys: Sequence[Any], doc_keys: Sequence[Any]) -> torch.Tensor:
    """``mask[i, j]`` is true where ``j != i`` and document ``j`` is also a positive of query ``i``."""
    q = np.asarray([str(k) for k in query_keys], dtype=object)
    d = np.asarray([str(k) for k in doc_keys], dtype=object)
    same = (q[:, None] == q[None, :]) | (d[:, None] == d[None, :])
    np.fill_diagonal(same, False)
    return torch.from_numpy(same.astype(bool))


def positive_mask(query_keys: Sequence[Any], doc_keys: Sequence[Any], positives: dict[Any, set[Any]]
                  ) -> torch.Tensor:
    """``mask[i, j]`` is true where candidate ``j`` (of ``doc_keys``) is a positive of query ``i`` and ``j != i``.

    ``positives`` maps every query key to the keys of all its positive documents.
    """
    mask = np.zeros((len(query_keys), len(doc_keys)), dtype=bool)
    for i, qk in enumerate(query_keys):
        pos = positives.get(qk, set())
        for j, dk in enumerate(doc_keys):
            if j != i and dk in pos:
                mask[i, j] = True
    return torch.from_numpy(mask)


def info_nce_terms(queries: torch.Tensor, documents: torch.Tensor, temperature: float,
                   exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-query InfoNCE losses and positive cosines for normalised ``queries[i]`` <-> ``documents[i]``.

    ``documents`` may hold more rows than ``queries`` (the extra rows are hard negatives shared by the batch).
    ``exclude[i, j]`` true removes document ``j`` from query ``i``'s candidates. The cosines are detached.
    """
    sims = queries @ documents.T
    logits = sims / temperature
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    target = torch.arange(len(queries), device=queries.device)
    losses = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    return losses, sims.diagonal().detach()


def info_nce(queries: torch.Tensor, documents: torch.Tensor, temperature: float,
             exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE over in-batch negatives: the mean of :func:`info_nce_terms`' losses, and the positive cosines."""
    losses, cos = info_nce_terms(queries, documents, temperature, exclude)
    return losses.mean(), cos


def mine_hard_negatives(query_vectors: np.ndarray, doc_vectors: np.ndarray, positives: Sequence[set[int]], *,
                        rank_from: int = 10, rank_to: int = 100, seed: int = 0) -> np.ndarray:
    """One hard negative per query: a document drawn uniformly from ranks ``rank_from``..``rank_to`` (1-based)
    of the query's exact inner-product ranking, skipping its positives; ``-1`` where that window is empty.

    ``positives[q]`` holds the document rows that are positives of query ``q``.
    """
    if not 1 <= rank_from <= rank_to:
        raise ValueError(f"hard-negative ranks {rank_from}..{rank_to} must satisfy 1 <= from <= to")
    depth = min(rank_to, len(doc_vectors))
    index = build_index(np.asarray(doc_vectors, dtype=np.float32), metric="ip", kind="flat")
    _, ranked = index.search(np.asarray(query_vectors, dtype=np.float32), depth)
    rng = np.random.default_rng(seed)
    out = np.full(len(query_vectors), -1, dtype=np.int64)
    for q, row in enumerate(ranked):
        window = [int(d) for d in row[rank_from - 1:depth] if d >= 0 and int(d) not in positives[q]]
        if window:
            out[q] = window[int(rng.integers(len(window)))]
    return out


def finetune_retriever(encoder: Encoder, tokenizer: Any, queries: Sequence[str], documents: Sequence[str],
                       query_keys: Sequence[Any], doc_keys: Sequence[Any], settings: RetrieverSettings, *,
                       seed: int = 0, sampler: common.Sampler | None = None, progress: bool = True,
                       desc: str = "finetune", negatives: Sequence[str | None] | None = None,
                       negative_keys: Sequence[Any] | None = None,
                       on_step: Callable[[common.TrainStats], None] | None = None) -> common.TrainStats:
    """Train ``encoder`` in place on the pairs ``(queries[i], documents[i])``.

    ``query_keys`` / ``doc_keys`` identify queries and documents (to mask false negatives: a candidate that is any
    positive of the query). Without a ``sampler`` each pair is visited once per epoch in a shuffled order; repeat
    pairs to weight them. ``negatives[i]`` (with its key ``negative_keys[i]``) is pair ``i``'s hard negative
    document, or ``None``. A sampler may scale each pair's loss (``loss_weights(indices)``) and ask for the
    per-pair loss instead of the positive cosine as its signal (``signal = "loss"``). ``on_step(stats)`` runs
    after every step (an evaluation point, for example; the encoder is back in training mode afterwards).
    """
    n = len(queries)
    if not (len(documents) == len(query_keys) == len(doc_keys) == n):
        raise ValueError("queries, documents, query_keys and doc_keys must have one entry per pair")
    if negatives is not None and (negative_keys is None or len(negatives) != n or len(negative_keys) != n):
        raise ValueError("negatives and negative_keys must have one entry per pair")
    common.seed_everything(seed)
    encoder.normalize = True
    sampler = sampler if sampler is not None else common.ShuffledSampler(n, settings.batch_size, seed=seed)
    optimizer = common.make_optimizer([{"params": list(encoder.parameters()), "lr": settings.lr}],
                                      settings.weight_decay)
    positives: dict[Any, set[Any]] = {}
    for qk, dk in zip(query_keys, doc_keys, strict=True):
        positives.setdefault(qk, set()).add(dk)
    wants_loss = getattr(sampler, "signal", "cosine") == "loss"
    encoder.train()

    def loss_fn(indices: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        texts = [documents[i] for i in indices]
        keys = [doc_keys[i] for i in indices]
        if negatives is not None and negative_keys is not None:
            extra = [i for i in indices if negatives[i] is not None]
            texts += [str(negatives[i]) for i in extra]
            keys += [negative_keys[i] for i in extra]
        q = encoder.embed(tokenizer, [queries[i] for i in indices], settings.max_length)
        d = encoder.embed(tokenizer, texts, settings.max_length)
        exclude = positive_mask([query_keys[i] for i in indices], keys, positives).to(q.device)
        losses, positive_cos = info_nce_terms(q, d, settings.temperature, exclude)
        weights = sampler.loss_weights(indices) if hasattr(sampler, "loss_weights") else None
        scale = None if weights is None else torch.as_tensor(weights, dtype=losses.dtype, device=losses.device)
        loss = losses.mean() if scale is None else (losses * scale).mean()
        signal = losses.detach().cpu().numpy() if wants_loss else positive_cos.cpu().numpy()
        return loss, signal

    def after_step(stats: common.TrainStats) -> None:
        if on_step is not None:
            on_step(stats)
            encoder.train()

    return common.train_module(encoder, settings, optimizer, sampler, loss_fn, progress=progress, desc=desc,
                               on_step=after_step if on_step is not None else None)


@torch.inference_mode()
def encode_texts(encoder: Encoder, tokenizer: Any, texts: Sequence[str], settings: RetrieverSettings, *,
                 progress: bool = True, desc: str = "encode") -> np.ndarray:
    """Normalised float32 embeddings, one row per text (batched longest first, returned in input order)."""
    encoder.eval()
    encoder.normalize = True
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    order = common.length_order([len(t) for t in texts])
    with progress_bar(progress, desc, len(texts)) as advance:
        for sl in common.batch_slices(len(order), settings.eval_batch_size):
            rows = order[sl]
            out[rows] = encoder.embed(tokenizer, [texts[i] for i in rows], settings.max_length).cpu().numpy()
            advance(len(rows))
    return out


def retrieve(encoder: Encoder, tokenizer: Any, corpus: Sequence[str], queries: Sequence[str], k: int,
             settings: RetrieverSettings, *, progress: bool = True) -> np.ndarray:
    """Corpus positions of each query's ``k`` best documents, best first (exact search by cosine)."""
    docs = encode_texts(encoder, tokenizer, corpus, settings, progress=progress, desc="encode corpus")
    qs = encode_texts(encoder, tokenizer, queries, settings, progress=progress, desc="encode queries")
    index = build_index(docs, metric="ip", kind="flat")
    _, ranked = index.search(qs, k)
    return ranked


# ---------------------------------------------------------------------------------------------------------
# Training on a task's pairs: base-model vectors, hard negatives, pruning, evaluation points
# ---------------------------------------------------------------------------------------------------------
@dataclass
class PairRun:
    """One finetuning run: the trained encoder, its statistics and what the pruning did."""

    encoder: Encoder
    tokenizer: Any
    stats: common.TrainStats
    pruning: dict[str, Any]


class PairTrainer:
    """Finetune the bi-encoder at ``model_path`` on the pairs ``(queries[i], documents[i])``, seed after seed.

    Queries and documents are keyed by their text (the same text is the same query or positive). The base
    model's vectors of every distinct query and document are computed once (or read from ``cache_dir``, keyed by
    the model's fingerprint, the texts and ``max_length``); they give the hard negatives (mined once, seed 0, so
    every run trains against the same negatives) and the base pair cosines that static and dynamic pruning
    start from. ``settings.pruning`` picks how pairs are visited: ``none`` and ``static`` (on the pairs static
    pruning keeps) make plain shuffled passes over the pairs, so repeated pairs (selection weights) count;
    ``dynamic`` and ``infobatch`` visit queries through :func:`tasksift.train.samplers.make_sampler`.
    ``device``: where the encoders run (``None``: the CPU); not part of the base vectors' cache key.
    """

    def __init__(self, model_path: Any, queries: Sequence[str], documents: Sequence[str],
                 settings: RetrieverSettings, *, progress: bool = True, cache_dir: Any = None,
                 device: torch.device | None = None) -> None:
        if len(queries) != len(documents) or not len(queries):
            raise ValueError("give one document per query and at least one pair")
        if settings.pruning not in PRUNING:
            raise InputError(f"unknown pruning {settings.pruning!r}", fix=f"use one of {', '.join(PRUNING)}")
        self.model_path = model_path
        self.queries, self.documents = list(queries), list(documents)
        self.settings = settings
        self.progress = progress
        self.cache_dir = cache_dir
        self.device = device
        self.pair_query, self.query_texts = group_queries(self.queries)
        self.pair_doc, self.doc_texts = group_queries(self.documents)
        self._base: tuple[np.ndarray, np.ndarray] | None = None
        self._negatives: np.ndarray | None = None

    def load(self) -> tuple[Encoder, Any]:
        """A fresh base encoder (normalised) on the trainer's device, and its tokenizer."""
        encoder, tokenizer = load_encoder(Path(self.model_path), normalize=True)
        return (encoder if self.device is None else encoder.to(self.device)), tokenizer

    # -- the base model's view ------------------------------------------------------------------------------
    def base_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Base-model vectors of the distinct queries and documents (computed once, cached when asked)."""
        if self._base is None:
            self._base = self._cached_base()
        return self._base

    def _cached_base(self) -> tuple[np.ndarray, np.ndarray]:
        path = None
        if self.cache_dir is not None:
            digest = hashlib.sha256()
            digest.update(model_fingerprint(Path(self.model_path)).encode())
            digest.update(str(self.settings.max_length).encode())
            for text in (*self.query_texts, "\x00", *self.doc_texts):
                digest.update(text.encode("utf-8") + b"\x00")
            path = Path(self.cache_dir) / f"base-vectors-{digest.hexdigest()[:24]}.npz"
            if path.is_file():
                with np.load(path) as stored:
                    return stored["queries"], stored["documents"]
        encoder, tokenizer = self.load()
        qv = encode_texts(encoder, tokenizer, self.query_texts, self.settings, progress=self.progress,
                          desc="base: encode queries")
        dv = encode_texts(encoder, tokenizer, self.doc_texts, self.settings, progress=self.progress,
                          desc="base: encode documents")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, queries=qv, documents=dv)
        return qv, dv

    def base_cosines(self) -> np.ndarray:
        """Each pair's cosine under the base model."""
        qv, dv = self.base_vectors()
        return np.sum(qv[self.pair_query].astype(np.float64) * dv[self.pair_doc].astype(np.float64), axis=1)

    def hard_negatives(self) -> np.ndarray:
        """Each distinct query's hard negative (a document number, ``-1`` for none)."""
        if self._negatives is None:
            qv, dv = self.base_vectors()
            positives: list[set[int]] = [set() for _ in self.query_texts]
            for q, d in zip(self.pair_query, self.pair_doc, strict=True):
                positives[q].add(int(d))
            self._negatives = mine_hard_negatives(qv, dv, positives, rank_from=self.settings.negatives_from,
                                                  rank_to=self.settings.negatives_to, seed=0)
        return self._negatives

    # -- one run -----------------------------------------------------------------------------------------------
    def kept_pairs(self, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The pair positions training uses: all of them, or those OPERA's static pruning keeps (the ``kept_pct``
        share with the highest base cosines, :func:`tasksift.train.samplers.static_pruning`)."""
        if self.settings.pruning != "static":
            return np.arange(len(self.queries)), {"kind": self.settings.pruning}
        qv, dv = self.base_vectors()
        scores = pair_cosines(qv[self.pair_query], dv[self.pair_doc])
        return static_pruning(scores, self.pair_query, self.settings.kept_pct, seed=seed)

    def planned_steps(self, n_items: int) -> int:
        """The step budget: ``max_steps``, else ``epochs`` full passes over ``n_items`` (pairs, or queries for
        the query-level samplers)."""
        if self.settings.max_steps is not None:
            return int(self.settings.max_steps)
        return math.ceil(n_items / self.settings.batch_size) * int(self.settings.epochs)

    def run(self, seed: int, *, on_step: Callable[[Encoder, Any, common.TrainStats], None] | None = None,
            desc: str = "finetune") -> PairRun:
        """Finetune a fresh copy of the base model with ``seed``; ``on_step(encoder, tokenizer, stats)`` runs
        after every step."""
        rows, info = self.kept_pairs(seed)
        queries = [self.queries[i] for i in rows]
        documents = [self.documents[i] for i in rows]
        pair_query, _ = group_queries(queries)
        sampler: Any = None  # standard finetuning (and static pruning's kept pairs): every pair once per pass
        if self.settings.pruning in ("none", "static"):
            total = self.planned_steps(len(rows))
        else:
            total = self.planned_steps(int(pair_query.max()) + 1)
            base_scores = self.base_cosines()[rows] if self.settings.pruning == "dynamic" else None
            sampler = make_sampler(self.settings.pruning, pair_query, self.settings.batch_size, total, seed=seed,
                                   base_scores=base_scores)
        negatives = negative_keys = None
        if self.settings.hard_negatives:
            neg = self.hard_negatives()[self.pair_query[rows]]
            negatives = [self.doc_texts[d] if d >= 0 else None for d in neg]
            negative_keys = [self.doc_texts[d] if d >= 0 else None for d in neg]
        encoder, tokenizer = self.load()
        settings = RetrieverSettings(**{**self.settings.to_dict(), "max_steps": total})
        hook = None
        if on_step is not None:
            def hook(stats: common.TrainStats) -> None:
                on_step(encoder, tokenizer, stats)
        stats = finetune_retriever(encoder, tokenizer, queries, documents, queries, documents, settings, seed=seed,
                                   sampler=sampler, progress=self.progress, desc=desc, negatives=negatives,
                                   negative_keys=negative_keys, on_step=hook)
        info = {**info, "pairs": len(rows), "queries": int(pair_query.max()) + 1,
                "passes": getattr(sampler, "history", [])}
        return PairRun(encoder=encoder, tokenizer=tokenizer, stats=stats, pruning=info)
