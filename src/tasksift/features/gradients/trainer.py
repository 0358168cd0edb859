"""The proxy trainer SPICE's interleaved mode steps and re-reads (:class:`ProxyTrainer`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasksift.features.gradients.featurizer import GradientFeaturizer
from tasksift.util.io import atomic_write


class ProxyTrainer:
    """Gradient features of pool rows under the proxy's current weights, and one optimiser step on some rows.

    This is the helper :class:`tasksift.selectors.spice.SpiceSelector` receives (``fit(..., proxy=...)``):
    ``gradients(rows)`` gives the rows' features in the same space as the features SPICE started from (same
    projection), ``step(rows)`` takes one AdamW step (``lr``, no weight decay, eval mode) on the mean loss of
    those rows and returns it.

    With ``cache_dir`` (``None``: no cache; the feature cache's root otherwise, ``proxy-gradients/`` in it) each
    answer of ``gradients`` is kept under a key of the proxy's trainable weights as they are, the feature
    settings and the rows' texts. A selection killed half way and run again replays its proxy steps, which are
    cheap, and reads back the gradients it had computed (the expensive part) as long as the replayed weights
    are the same to the bit; where they are not, nothing matches and the gradients are computed again.
    """

    def __init__(self, featurizer: GradientFeaturizer, texts: Sequence[str], *, lr: float = 1e-4,
                 cache_dir: str | Path | None = None) -> None:
        self.featurizer = featurizer
        self.texts = list(texts)
        self.lr = float(lr)
        self.optimizer = torch.optim.AdamW(featurizer.proxy.trainable_parameters(), lr=self.lr, weight_decay=0.0)
        self.steps = 0
        self.losses: list[float] = []
        self.cache = None if cache_dir is None else Path(cache_dir).expanduser() / "proxy-gradients"
        self.reused = 0

    def gradients(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Feature rows of ``texts[rows]`` under the current weights (read back from the cache when kept)."""
        texts = [self.texts[int(i)] for i in rows]
        if self.cache is None:
            return self.featurizer(texts)
        path = self.cache / f"{self._key(texts)}.npy"
        if path.is_file():
            try:
                kept = np.load(path)
            except (OSError, ValueError):  # a damaged file: computed again and replaced
                kept = None
            if kept is not None and kept.shape[0] == len(texts):
                self.reused += 1
                return kept
        out = np.ascontiguousarray(self.featurizer(texts), dtype=np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: np.save(f, out))
        return out

    def _key(self, texts: list[str]) -> str:
        """The weights that set the gradients (every trainable tensor, its bytes), the settings and the texts."""
        digest = hashlib.sha256(json.dumps(self.featurizer.settings, sort_keys=True, default=str).encode())
        for tensor in self.featurizer.proxy.trainable_parameters():
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        for text in texts:
            digest.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
        return digest.hexdigest()

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
                "feature_settings": self.featurizer.settings, "gradients_reused": self.reused}
