"""A MiniLM bi-encoder finetuned on (query, positive document) pairs with InfoNCE and in-batch negatives.

One shared encoder (mean pooling, L2-normalised) embeds queries and documents. For a batch of B pairs the
logits are ``cos(q_i, d_j) / temperature`` and the loss is the cross-entropy of picking ``d_i`` for ``q_i``.
An in-batch document that is also a positive of ``q_i`` (same document id, or another positive of the same
query) is masked out rather than used as a negative.

The sampler hook: :func:`finetune_retriever` draws batches of pair positions from a
:class:`~tasksift.train.common.Sampler` and, after every forward pass, calls
``sampler.observe(pair_positions, positive_cosines)`` with the live cosine of each pair of the batch. The
default sampler makes plain shuffled passes; a dynamic-pruning sampler (OPERA) keeps per-pair scores from those
cosines and decides which pairs the next pass visits.

Evaluation: the corpus and the queries are encoded, and an exact inner-product index over the normalised
document vectors (:func:`tasksift.index.build_index`, ``flat``) returns each query's ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from tasksift.index import build_index
from tasksift.train.common import (
    Sampler,
    ShuffledSampler,
    TrainStats,
    batch_slices,
    length_order,
    make_optimizer,
    progress_bar,
    run_steps,
    seed_everything,
)
from tasksift.train.models import Encoder


@dataclass
class RetrieverSettings:
    """How every selection of a comparison is trained (fp32, seeded)."""

    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 3e-5
    temperature: float = 0.05
    weight_decay: float = 0.01
    max_length: int = 128
    grad_clip: float | None = 1.0
    eval_batch_size: int = 64

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def false_negative_mask(query_keys: Sequence[Any], doc_keys: Sequence[Any]) -> torch.Tensor:
    """``mask[i, j]`` is true where ``j != i`` and document ``j`` is also a positive of query ``i``."""
    q = np.asarray([str(k) for k in query_keys], dtype=object)
    d = np.asarray([str(k) for k in doc_keys], dtype=object)
    same = (q[:, None] == q[None, :]) | (d[:, None] == d[None, :])
    np.fill_diagonal(same, False)
    return torch.from_numpy(same.astype(bool))


def info_nce(queries: torch.Tensor, documents: torch.Tensor, temperature: float,
             exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE over in-batch negatives for normalised ``queries[i]`` <-> ``documents[i]``.

    Returns the mean loss and each pair's positive cosine (detached). ``exclude[i, j]`` true removes document
    ``j`` from query ``i``'s candidates.
    """
    sims = queries @ documents.T
    logits = sims / temperature
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    target = torch.arange(len(queries))
    loss = torch.nn.functional.cross_entropy(logits, target)
    return loss, sims.diagonal().detach()


def finetune_retriever(encoder: Encoder, tokenizer: Any, queries: Sequence[str], documents: Sequence[str],
                       query_keys: Sequence[Any], doc_keys: Sequence[Any], settings: RetrieverSettings, *,
                       seed: int = 0, sampler: Sampler | None = None, progress: bool = True,
                       desc: str = "finetune") -> TrainStats:
    """Train ``encoder`` in place on the pairs ``(queries[i], documents[i])``.

    ``query_keys`` / ``doc_keys`` identify queries and documents (to mask in-batch false negatives). Without a
    ``sampler`` each pair is visited once per epoch in a shuffled order; repeat pairs to weight them.
    """
    n = len(queries)
    if not (len(documents) == len(query_keys) == len(doc_keys) == n):
        raise ValueError("queries, documents, query_keys and doc_keys must have one entry per pair")
    seed_everything(seed)
    encoder.normalize = True
    sampler = sampler if sampler is not None else ShuffledSampler(n, settings.batch_size, seed=seed)
    optimizer = make_optimizer([{"params": list(encoder.parameters()), "lr": settings.lr}], settings.weight_decay)
    encoder.train()

    def loss_fn(indices: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        q = encoder.embed(tokenizer, [queries[i] for i in indices], settings.max_length)
        d = encoder.embed(tokenizer, [documents[i] for i in indices], settings.max_length)
        exclude = false_negative_mask([query_keys[i] for i in indices], [doc_keys[i] for i in indices])
        loss, positive_cos = info_nce(q, d, settings.temperature, exclude)
        return loss, positive_cos.numpy()

    stats = run_steps(list(encoder.parameters()), optimizer, sampler, loss_fn, epochs=settings.epochs,
                      max_steps=settings.max_steps, grad_clip=settings.grad_clip, progress=progress, desc=desc)
    encoder.eval()
    return stats


@torch.inference_mode()
def encode_texts(encoder: Encoder, tokenizer: Any, texts: Sequence[str], settings: RetrieverSettings, *,
                 progress: bool = True, desc: str = "encode") -> np.ndarray:
    """Normalised float32 embeddings, one row per text (batched longest first, returned in input order)."""
    encoder.eval()
    encoder.normalize = True
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    order = length_order([len(t) for t in texts])
    with progress_bar(progress, desc, len(texts)) as advance:
        for sl in batch_slices(len(order), settings.eval_batch_size):
            rows = order[sl]
            out[rows] = encoder.embed(tokenizer, [texts[i] for i in rows], settings.max_length).numpy()
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
