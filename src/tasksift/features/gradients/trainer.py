"""The proxy trainer SPICE's interleaved mode steps and re-reads (:class:`ProxyTrainer`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tasksift.features.gradients.featurizer import GradientFeaturizer


class ProxyTrainer:
    """Gradient features of pool rows under the proxy's current weights, and one optimiser step on some rows.

    This is the helper :class:`tasksift.selectors.spice.SpiceSelector` receives (``fit(..., proxy=...)``):
    ``gradients(rows)`` gives the rows' features in the same space as the features SPICE started from (same
    projection, no cache: the weights change), ``step(rows)`` takes one AdamW step (``lr``, no weight decay,
    eval mode) on the mean loss of those rows and returns it.
    """

    def __init__(self, featurizer: GradientFeaturizer, texts: Sequence[str], *, lr: float = 1e-4) -> None:
        self.featurizer = featurizer
        self.texts = list(texts)
        self.lr = float(lr)
        self.optimizer = torch.optim.AdamW(featurizer.proxy.trainable_parameters(), lr=self.lr, weight_decay=0.0)
        self.steps = 0
        self.losses: list[float] = []

    def gradients(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Feature rows of ``texts[rows]`` under the current weights."""
        return self.featurizer([self.texts[int(i)] for i in rows])

    def step(self, rows: Sequence[int] | np.ndarray) -> float:
        """One optimiser step on the mean loss of ``texts[rows]``; the loss before the step."""
        proxy = self.featurizer.proxy
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = proxy.losses([self.texts[int(i)] for i in rows]).mean()
            loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        self.steps += 1
        proxy.adapter_state = {**(proxy.adapter_state or {}), "trainer_steps": self.steps}
        self.losses.append(value)
        return value

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for the manifest."""
        return {"proxy": self.featurizer.proxy.identity, "lr": self.lr, "steps": self.steps,
                "feature_settings": self.featurizer.settings}
