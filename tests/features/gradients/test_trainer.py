"""The proxy trainer SPICE steps: a step moves the gradients it reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasksift.features.gradients.featurizer import GradientFeaturizer
from tasksift.features.gradients.projection import RandomProjection
from tasksift.features.gradients.proxy import load_proxy
from tasksift.features.gradients.trainer import ProxyTrainer
from tests.features.gradients.helpers import LLAMA_TEXTS


def test_proxy_trainer_steps_change_the_gradients(llama_dir: Path) -> None:
    proxy = load_proxy(llama_dir)
    trainer = ProxyTrainer(GradientFeaturizer(proxy, projection=RandomProjection(proxy.dim, 32)), LLAMA_TEXTS,
                           lr=1e-2)
    before = trainer.gradients(np.array([0, 3]))
    loss = trainer.step(np.array([0, 1, 3]))
    after = trainer.gradients(np.array([0, 3]))
    assert before.shape == (2, 32) and np.isfinite(loss) and trainer.steps == 1
    assert not np.allclose(before, after)
    assert trainer.describe()["steps"] == 1


def test_a_replayed_proxy_reads_back_the_gradients_it_had_computed(llama_dir: Path, tmp_path: Path) -> None:
    # a selection killed half way and run again: the same steps give the same weights, whose gradients are kept
    def trainer() -> ProxyTrainer:
        proxy = load_proxy(llama_dir)
        return ProxyTrainer(GradientFeaturizer(proxy, projection=RandomProjection(proxy.dim, 32)), LLAMA_TEXTS,
                            lr=1e-2, cache_dir=tmp_path)

    first = trainer()
    computed = [first.gradients(np.array([0, 3]))]
    first.step(np.array([0, 1]))
    computed.append(first.gradients(np.array([1, 2])))
    assert first.reused == 0 and len(list((tmp_path / "proxy-gradients").glob("*.npy"))) == 2

    again = trainer()
    replayed = [again.gradients(np.array([0, 3]))]
    again.step(np.array([0, 1]))
    replayed.append(again.gradients(np.array([1, 2])))
    assert again.reused == 2 and all(np.array_equal(a, b) for a, b in zip(computed, replayed, strict=True))
    # other weights (one more step), or other rows: nothing kept matches, they are computed
    again.step(np.array([2]))
    moved = again.gradients(np.array([1, 2]))
    assert again.reused == 2 and not np.allclose(moved, computed[1])
    assert np.array_equal(trainer().gradients(np.array([0, 3])), computed[0])
    uncached = ProxyTrainer(GradientFeaturizer(load_proxy(llama_dir), projection=RandomProjection(
        load_proxy(llama_dir).dim, 32)), LLAMA_TEXTS, lr=1e-2)
    assert np.array_equal(uncached.gradients(np.array([0, 3])), computed[0])  # the cache changes no value
    for kept in (tmp_path / "proxy-gradients").glob("*.npy"):
        kept.write_bytes(b"not an array")  # a damaged file is computed again and replaced
    fresh = trainer()
    assert np.array_equal(fresh.gradients(np.array([0, 3])), computed[0]) and fresh.reused == 0
    assert np.array_equal(trainer().gradients(np.array([0, 3])), computed[0])
