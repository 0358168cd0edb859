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
