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


# ---------------------------------------------------------------------------------------------------------
# hard negatives, the candidate mask, loss weights and the OPERA sampler in the real loop
# ---------------------------------------------------------------------------------------------------------
def test_mine_hard_negatives_draws_from_the_rank_window_without_positives() -> None:
    from tasksift.train.retriever import mine_hard_negatives

    # one query along x; documents at decreasing cosine: rank r (1-based) is document r - 1
    angles = np.linspace(0, 170, 18)
    docs = np.stack([np.cos(np.radians(angles)), np.sin(np.radians(angles))], axis=1).astype(np.float32)
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    drawn = {int(mine_hard_negatives(query, docs, [{3}], rank_from=3, rank_to=6, seed=s)[0]) for s in range(60)}
    assert drawn == {2, 4, 5}  # ranks 3..6 are documents 2..5; document 3 is a positive
    assert mine_hard_negatives(query, docs, [{0, 1}], rank_from=1, rank_to=2).tolist() == [-1]  # window empty
    with pytest.raises(ValueError):
        mine_hard_negatives(query, docs, [set()], rank_from=5, rank_to=2)


def test_positive_mask_removes_every_positive_of_the_query_but_its_own() -> None:
    from tasksift.train.retriever import positive_mask

    positives = {"q1": {"a", "c"}, "q2": {"b"}}
    # candidates: the batch's positives a (q1), b (q2), then hard negatives c and b
    mask = positive_mask(["q1", "q2"], ["a", "b", "c", "b"], positives)
    assert mask.numpy().tolist() == [[False, False, True, False], [False, False, False, True]]


def test_info_nce_terms_and_weights_by_hand() -> None:
    from tasksift.train.retriever import info_nce_terms

    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]])  # the third row is a hard negative for both
    t = 0.5
    losses, cos = info_nce_terms(q, d, t)
    row0 = -math.log(math.exp(0.6 / t) / (math.exp(0.6 / t) + math.exp(0.0) + math.exp(1.0 / t)))
    row1 = -math.log(math.exp(1.0 / t) / (math.exp(0.8 / t) + math.exp(1.0 / t) + math.exp(0.0)))
    assert losses.tolist() == pytest.approx([row0, row1], rel=1e-6)
    assert cos.tolist() == pytest.approx([0.6, 1.0])


def test_settings_follow_opera() -> None:
    s = RetrieverSettings()
    assert s.temperature == 0.02 and s.hard_negatives and (s.negatives_from, s.negatives_to) == (10, 100)
    assert s.pruning == "none" and s.kept_pct == 0.5


def test_dynamic_scores_are_the_live_cosines_of_the_pairs_trained(tmp_path: Path) -> None:
    """OPERA's score refresh through the real loop: after training, exactly the pairs handed out carry new scores,
    and those are the positive cosines of the training forward pass (the first batch's match the base model)."""
    from tasksift.train.samplers import OperaDynamicSampler

    task = load_task(retrieval_task(tmp_path))
    train = task.training_data(np.arange(len(task.pool)))
    _, path = resolve_encoder(None)
    encoder, tok = load_encoder(path, normalize=True)
    for module in encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    settings = RetrieverSettings(max_steps=2, batch_size=3, lr=5e-5)
    q0 = encode_texts(encoder, tok, train.queries, settings, progress=False)
    d0 = encode_texts(encoder, tok, train.documents, settings, progress=False)
    base = np.sum(q0 * d0, axis=1).astype(np.float64)
    sampler = OperaDynamicSampler(np.arange(len(base)), base, settings.batch_size, total_steps=2, seed=0)
    given: list[int] = []
    original_observe = sampler.observe

    def watch(indices: np.ndarray, signal: np.ndarray) -> None:
        given.extend(indices.tolist())
        original_observe(indices, signal)

    sampler.observe = watch  # type: ignore[method-assign]
    negatives = [train.documents[(i + 5) % len(base)] for i in range(len(base))]
    finetune_retriever(encoder, tok, train.queries, train.documents, train.queries, train.documents, settings,
                       sampler=sampler, progress=False, negatives=negatives, negative_keys=negatives)
    assert len(given) == 6
    changed = np.flatnonzero(np.abs(sampler.scores - base) > 0)
    unseen = np.setdiff1d(np.arange(len(base)), given)
    assert set(changed.tolist()) <= set(given)
    assert np.array_equal(sampler.scores[unseen], base[unseen])
    assert sampler.scores[given[:3]] == pytest.approx(base[given[:3]], abs=1e-4)


class _Weighted(ShuffledSampler):
    """Scales every pair's loss by 0 but one: the step then moves the model by that pair alone."""

    signal = "loss"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.signals: list[list[float]] = []

    def loss_weights(self, indices: np.ndarray) -> np.ndarray:
        return np.zeros(len(indices))

    def observe(self, indices: np.ndarray, signal: np.ndarray) -> None:
        self.signals.append(signal.tolist())


def test_loss_weights_and_the_loss_signal(tmp_path: Path) -> None:
    task = load_task(retrieval_task(tmp_path))
    train = task.training_data(np.arange(len(task.pool)))
    _, path = resolve_encoder(None)
    encoder, tok = load_encoder(path, normalize=True)
    before = [p.detach().clone() for p in encoder.parameters()]
    settings = RetrieverSettings(max_steps=1, batch_size=4, weight_decay=0.0)
    sampler = _Weighted(len(train.queries), settings.batch_size, seed=0)
    finetune_retriever(encoder, tok, train.queries, train.documents, train.queries, train.documents, settings,
                       sampler=sampler, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, encoder.parameters(), strict=True))  # zero weight, no step
    assert len(sampler.signals[0]) == 4 and all(v > 0 for v in sampler.signals[0])  # per-pair InfoNCE losses
