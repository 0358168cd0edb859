"""The MiniLM bi-encoder: InfoNCE by hand, the sampler hook, a few steps on a tiny glossary task."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tasksift.eval.metrics import ndcg_at_k
from tasksift.eval.tasks import load_task
from tasksift.train import (
    RetrieverSettings,
    ShuffledSampler,
    encode_texts,
    false_negative_mask,
    finetune_retriever,
    info_nce,
    load_encoder,
    resolve_encoder,
    retrieve,
)
from tests.train.helpers import retrieval_task


def test_info_nce_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    t = 0.5
    loss, cos = info_nce(q, d, t)
    row0 = -math.log(math.exp(0.6 / t) / (math.exp(0.6 / t) + math.exp(0.0 / t)))
    row1 = -math.log(math.exp(1.0 / t) / (math.exp(0.8 / t) + math.exp(1.0 / t)))
    assert float(loss) == pytest.approx((row0 + row1) / 2, rel=1e-6)
    assert cos.tolist() == pytest.approx([0.6, 1.0])
    masked, _ = info_nce(q, d, t, exclude=torch.tensor([[False, True], [False, False]]))
    assert float(masked) == pytest.approx((0.0 + row1) / 2, rel=1e-6)  # query 0 has no negative left


def test_false_negative_mask() -> None:
    mask = false_negative_mask(["q1", "q2", "q1", "q3"], ["a", "b", "c", "b"])
    expected = np.zeros((4, 4), dtype=bool)
    expected[0, 2] = expected[2, 0] = True  # same query: c is also a positive of q1
    expected[1, 3] = expected[3, 1] = True  # same document b
    assert mask.numpy().tolist() == expected.tolist()


class _Watcher(ShuffledSampler):
    """The OPERA hook: sees the live positive cosine of every pair it handed out."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.given: list[list[int]] = []
        self.observed: list[tuple[list[int], list[float]]] = []

    def batches(self, pass_index: int):
        for batch in super().batches(pass_index):
            self.given.append(batch.tolist())
            yield batch

    def observe(self, indices: np.ndarray, signal: np.ndarray) -> None:
        self.observed.append((indices.tolist(), signal.tolist()))


def test_retriever_trains_with_a_sampler_and_scores(tmp_path: Path) -> None:
    task = load_task(retrieval_task(tmp_path))
    train = task.training_data(np.arange(len(task.pool)))
    test = task.test_data()
    _, path = resolve_encoder(None)
    encoder, tok = load_encoder(path, normalize=True)
    for module in encoder.modules():  # without dropout a training forward equals an eval forward
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    settings = RetrieverSettings(max_steps=3, batch_size=4, lr=5e-5)
    q0 = encode_texts(encoder, tok, train.queries, settings, progress=False)
    d0 = encode_texts(encoder, tok, train.documents, settings, progress=False)
    sampler = _Watcher(len(train.queries), settings.batch_size, seed=0)
    stats = finetune_retriever(encoder, tok, train.queries, train.documents, train.queries, train.documents,
                               settings, sampler=sampler, progress=False)
    assert stats.steps == 3
    assert [i for i, _ in sampler.observed] == sampler.given
    cosines = np.concatenate([c for _, c in sampler.observed])
    assert np.all((cosines >= -1.0001) & (cosines <= 1.0001))
    # the live cosine of a pair is its cosine under the encoder of that step: the first batch's match the start
    first_idx, first_cos = sampler.observed[0]
    assert first_cos == pytest.approx(np.sum(q0[first_idx] * d0[first_idx], axis=1).tolist(), abs=1e-4)
    q1 = encode_texts(encoder, tok, train.queries, settings, progress=False)
    d1 = encode_texts(encoder, tok, train.documents, settings, progress=False)
    assert np.mean(np.sum(q1 * d1, axis=1)) > np.mean(np.sum(q0 * d0, axis=1))  # positives pulled together

    ranked = retrieve(encoder, tok, test.corpus, test.queries, 100, settings, progress=False)
    assert ranked.shape == (len(test.queries), len(test.corpus))  # k is capped at the corpus size
    ids = [[test.corpus_ids[j] for j in row] for row in ranked]
    assert all(sorted(r) == sorted(test.corpus_ids) for r in ids)
    value = ndcg_at_k(ids, test.relevant, 10)
    assert 0.0 < value <= 1.0
