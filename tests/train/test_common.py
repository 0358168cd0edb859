"""Weighted examples, samplers and the shared step loop."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from tasksift.errors import InputError
from tasksift.train.common import ShuffledSampler, expand_counts, planned_steps, run_steps


def test_expand_counts_repeats_each_row_by_its_rounded_weight() -> None:
    out = expand_counts([5, 7, 9, 11], [3, 1, 0.4, 2.5])
    assert Counter(out.tolist()) == {5: 3, 7: 1, 11: 3}  # 0.4 -> 0 (dropped), 2.5 -> 3 (half up)
    assert expand_counts([4, 2]).tolist() == [4, 2]
    with pytest.raises(InputError):
        expand_counts([1, 2], [1.0, -1.0])
    with pytest.raises(InputError):
        expand_counts([1], [float("nan")])


def test_shuffled_sampler_visits_every_example_once_per_pass() -> None:
    sampler = ShuffledSampler(10, 4, seed=3)
    assert sampler.batches_per_pass() == 3
    passes = [np.concatenate(list(sampler.batches(p))) for p in range(2)]
    for seen in passes:
        assert sorted(seen.tolist()) == list(range(10))
    assert passes[0].tolist() != passes[1].tolist()  # a new order each pass
    again = ShuffledSampler(10, 4, seed=3)
    assert np.concatenate(list(again.batches(0))).tolist() == passes[0].tolist()


class _Recorder(ShuffledSampler):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.observed: list[tuple[list[int], list[float]]] = []

    def observe(self, indices: np.ndarray, signal: np.ndarray) -> None:
        self.observed.append((indices.tolist(), signal.tolist()))


def _problem() -> tuple[torch.nn.Parameter, torch.optim.Optimizer, torch.Tensor]:
    w = torch.nn.Parameter(torch.zeros(1))
    return w, torch.optim.SGD([w], lr=0.1), torch.arange(6, dtype=torch.float32)


def test_run_steps_epochs_and_observe() -> None:
    w, opt, targets = _problem()
    sampler = _Recorder(6, 4, seed=0)

    def loss_fn(idx: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        per = (w - targets[idx]) ** 2
        return per.mean(), per.detach().numpy()

    stats = run_steps([w], opt, sampler, loss_fn, epochs=3, progress=False)
    assert planned_steps(sampler, 3, None) == 6
    assert stats.steps == 6 and stats.passes == 3 and stats.examples_seen == 18
    assert [len(i) for i, _ in sampler.observed] == [4, 2] * 3
    assert all(len(i) == len(s) for i, s in sampler.observed)
    assert stats.last_loss < stats.first_loss
    assert 0.0 < float(w.detach()) < 5.0


def test_max_steps_overrides_epochs() -> None:
    w, opt, targets = _problem()

    def loss_fn(idx: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        return ((w - targets[idx]) ** 2).mean(), np.zeros(len(idx))

    stats = run_steps([w], opt, ShuffledSampler(6, 4), loss_fn, epochs=1, max_steps=5, progress=False)
    assert stats.steps == 5 and stats.passes == 3 and stats.examples_seen == 4 + 2 + 4 + 2 + 4
    stats = run_steps([w], opt, ShuffledSampler(6, 4), loss_fn, epochs=3, max_steps=0, progress=False)
    assert stats.steps == 0 and stats.first_loss is None


def test_setup_torch_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from tasksift.train.common import THREADS_ENV, setup_torch

    monkeypatch.setenv(THREADS_ENV, "1")
    assert setup_torch() == 1 and torch.get_num_threads() == 1
    assert setup_torch(2) == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(InputError, match="TASKSIFT_THREADS='many'"):
        setup_torch()
    monkeypatch.delenv(THREADS_ENV)
    assert setup_torch() >= 1
