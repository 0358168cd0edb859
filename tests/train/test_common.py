"""Weighted examples, samplers and the shared step loop."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from tasksift.train.common import Checkpoint, ShuffledSampler, expand_counts, planned_steps, run_steps
from tasksift.util.errors import InputError


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


# -- checkpoints ---------------------------------------------------------------------------------------------------
class _Killed(Exception):
    pass


def _linear_run(checkpoint: Checkpoint | None, kill_at: int | None = None, epochs: int = 3
                ) -> tuple[torch.nn.Linear, object]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(1))
    y = torch.randn(10, 1, generator=torch.Generator().manual_seed(2))
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)

    def loss_fn(idx: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        h = torch.nn.functional.dropout(model(x[idx]), p=0.3)  # uses torch's random state
        per = ((h - y[idx]) ** 2).squeeze(1)
        return per.mean(), per.detach().numpy()

    def on_step(stats: object) -> None:
        if kill_at is not None and stats.steps == kill_at:  # type: ignore[attr-defined]
            raise _Killed

    stats = run_steps(list(model.parameters()), opt, ShuffledSampler(10, 4, seed=3), loss_fn, epochs=epochs,
                      progress=False, on_step=on_step, checkpoint=checkpoint)
    return model, stats


@pytest.mark.parametrize("kill_at", [1, 3, 5, 8, 9])  # within a pass, at the end of one (3 a pass), the last
def test_a_killed_run_resumes_to_the_same_tensors_as_an_uninterrupted_one(tmp_path, kill_at: int) -> None:
    plain, plain_stats = _linear_run(None)
    ckpt = Checkpoint(tmp_path / "run.pt", key="k", every_steps=1)
    with pytest.raises(_Killed):
        _linear_run(ckpt, kill_at=kill_at)
    assert torch.load(ckpt.path, weights_only=False)["steps"] == kill_at
    resumed, stats = _linear_run(ckpt)
    for a, b in zip(plain.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert stats.losses == plain_stats.losses and stats.steps == 9 == plain_stats.steps
    assert stats.passes == plain_stats.passes == 3 and stats.examples_seen == plain_stats.examples_seen == 30


def test_a_checkpoint_of_another_run_is_not_resumed_from(tmp_path) -> None:
    plain, _ = _linear_run(None)
    with pytest.raises(_Killed):
        _linear_run(Checkpoint(tmp_path / "run.pt", key="other", every_steps=1), kill_at=4)
    (tmp_path / "torn.pt").write_bytes(b"not a checkpoint")
    for ckpt in (Checkpoint(tmp_path / "run.pt", key="this", every_steps=1),
                 Checkpoint(tmp_path / "torn.pt", key="this", every_steps=1)):
        assert ckpt.load() is None
        fresh, stats = _linear_run(ckpt)
        assert stats.steps == 9 and all(torch.equal(a, b) for a, b in zip(plain.parameters(), fresh.parameters(),
                                                                        strict=True))
        assert ckpt.load() is not None and ckpt.load()["steps"] == 9


def test_a_sampler_without_state_cannot_take_a_checkpoint(tmp_path) -> None:
    class Plain(ShuffledSampler):
        def state(self) -> None:
            return None

    w, opt, targets = _problem()
    with pytest.raises(InputError, match="cannot be checkpointed"):
        run_steps([w], opt, Plain(6, 4), lambda idx: (((w - targets[idx]) ** 2).mean(), np.zeros(len(idx))),
                  epochs=1, progress=False, checkpoint=Checkpoint(tmp_path / "c.pt", key="k"))
