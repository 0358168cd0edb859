"""LESS's warm-up and Adam preconditioning of gradient rows.

Adam preconditioning (:func:`adam_warmup`, LESS): a few AdamW steps on a sample train the adapters and leave
Adam's moments; a pool feature is then ``g / (sqrt(v_hat) + eps)`` with the bias-corrected ``v_hat``
(``precondition="adam"``, the formula of docs/methods.md) or, as LESS's own code does, the Adam update direction
with the example's gradient folded into both moments (``precondition="less"``, :data:`PRECONDITION_RULES`).
Measured here (SmolLM2, a 4-step warm-up, BBC News): the ``adam`` rule's tiny ``v`` on rarely-touched
coordinates (down to 1e-17) blows them up, pool-target cosines fall to about 0.015, and a 1,024- or
8,192-dimensional projection's noise (about ``1/sqrt(k)``) then drowns them; the ``less`` rule bounds every
coordinate. Target features are taken from the same warmed-up proxy without preconditioning. The warmed-up
state is cached (kind ``gradient-warmup``), so the pool run and the target run share it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasksift.features.gradients.proxy import FEATURE_VERSION, ProxyModel, key_identity
from tasksift.train.common import ShuffledSampler, make_optimizer, run_steps
from tasksift.util.env import default_cache_root
from tasksift.util.errors import InputError
from tasksift.util.hashing import text_digest
from tasksift.util.io import atomic_write

#: how a pool gradient ``g`` is preconditioned with the warm-up's Adam moments ``m``, ``v`` (step ``t``):
#: ``adam``: ``g / (sqrt(v / (1 - beta2^t)) + eps)`` (docs/methods.md); ``less``: the LESS reference code's
#: ``(beta1 m + (1 - beta1) g) / sqrt(beta2 v + (1 - beta2) g^2 + eps)``, each coordinate bounded by
#: ``(1 - beta1) / sqrt(1 - beta2)`` plus the momentum term
PRECONDITION_RULES = ("adam", "less")


@dataclass(frozen=True)
class WarmupSettings:
    """A short AdamW run that trains the adapters and leaves Adam's second moments (LESS's warm-up).

    ``steps`` optimizer steps of ``batch_size`` texts drawn in seeded shuffled passes over the warm-up texts
    (at most ``sample`` of them, a seeded sample; ``None``: all), at learning rate ``lr``, no weight decay,
    gradient norm clipped at 1, in eval mode (no dropout). ``eps`` is the preconditioner's
    ``g / (sqrt(v_hat) + eps)``.
    """

    steps: int = 0
    lr: float = 3e-4
    batch_size: int = 8
    sample: int | None = 256
    seed: int = 0
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or (self.sample is not None and self.sample < 1):
            raise InputError("warm-up steps must be >= 0, batch size and sample size positive")
        if not (self.lr > 0 and self.eps > 0):
            raise InputError("warm-up lr and eps must be positive")


@dataclass
class WarmupState:
    """What a warm-up leaves: the adapters' trained values and Adam's moments after the last step (flat).

    ``m`` and ``v`` are Adam's raw ``exp_avg`` and ``exp_avg_sq`` (no bias correction), ``step`` the number of
    updates they saw, ``betas`` Adam's.
    """

    params: list[torch.Tensor]
    m: torch.Tensor
    v: torch.Tensor
    step: int
    betas: tuple[float, float]
    losses: list[float]

    @property
    def v_hat(self) -> torch.Tensor:
        """The bias-corrected second moments ``v / (1 - beta2^step)``."""
        return self.v / (1.0 - self.betas[1] ** max(self.step, 1))

    def precondition(self, grads: torch.Tensor, rule: str, eps: float) -> torch.Tensor:
        """Per-example gradients ``(B, D)`` preconditioned by ``rule`` (see :data:`PRECONDITION_RULES`)."""
        if rule == "adam":
            return grads / (self.v_hat.sqrt() + eps)
        if rule == "less":
            beta1, beta2 = self.betas
            return (beta1 * self.m + (1 - beta1) * grads) / torch.sqrt(beta2 * self.v + (1 - beta2) * grads**2 + eps)
        raise ValueError(f"unknown preconditioning rule {rule!r}")


def warmup_sample(texts: Sequence[str], settings: WarmupSettings) -> list[str]:
    """The warm-up texts: a seeded sample of at most ``settings.sample`` texts, in a seeded order."""
    n = len(texts)
    take = n if settings.sample is None else min(n, settings.sample)
    rows = np.random.default_rng(settings.seed).permutation(n)[:take]
    return [texts[i] for i in rows]



def warmup_key(texts: Sequence[str], settings: WarmupSettings) -> dict[str, Any]:
    """The warm-up's part of a gradient feature cache key: its settings and the digest of its sampled texts."""
    return {**asdict(settings), "texts": texts_digest(warmup_sample(texts, settings))}


def adam_warmup(proxy: ProxyModel, texts: Sequence[str], settings: WarmupSettings, *,
                progress: bool = True) -> WarmupState:
    """Train ``proxy``'s adapters with AdamW for ``settings.steps`` steps; return the moments (proxy is changed).

    Reuses the training loop of :mod:`tasksift.train.common`.
    """
    sample = warmup_sample(texts, settings)
    if not sample:
        raise InputError("the warm-up has no texts", fix="give the warm-up at least one text")
    params = proxy.trainable_parameters()
    optimizer = make_optimizer([{"params": params, "lr": settings.lr}], weight_decay=0.0)
    sampler = ShuffledSampler(len(sample), settings.batch_size, seed=settings.seed)

    def loss_fn(indices: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        losses = proxy.losses([sample[i] for i in indices])
        return losses.mean(), losses.detach().cpu().numpy()

    proxy.module.eval()
    epochs = -(-settings.steps // sampler.batches_per_pass())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        stats = run_steps(params, optimizer, sampler, loss_fn, epochs=epochs, max_steps=settings.steps,
                          grad_clip=1.0, progress=progress, desc="gradient warm-up")
    betas = tuple(float(b) for b in optimizer.param_groups[0]["betas"])
    firsts, seconds = [], []
    for p in params:
        state = optimizer.state.get(p, {})
        firsts.append(state["exp_avg"].reshape(-1).cpu() if "exp_avg" in state else torch.zeros(p.numel()))
        seconds.append(state["exp_avg_sq"].reshape(-1).cpu() if "exp_avg_sq" in state else torch.zeros(p.numel()))
    optimizer.zero_grad(set_to_none=True)
    # the moments and values on the CPU, where the raw gradient rows are preconditioned
    return WarmupState([p.detach().cpu().clone() for p in params], torch.cat(firsts).float(),
                       torch.cat(seconds).float(), stats.steps, (betas[0], betas[1]), stats.losses)


def _warmup_path(cache_root: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()
    return cache_root / "gradient-warmup" / f"{digest}.pt"


def cached_warmup(proxy: ProxyModel, texts: Sequence[str], settings: WarmupSettings, *,
                  cache_dir: str | Path | None = None, progress: bool = True) -> WarmupState:
    """:func:`adam_warmup`, or its saved result when the same proxy ran the same warm-up before.

    Loading a saved state also sets the proxy's adapters to the warmed-up values.
    """
    key = {"proxy": key_identity(proxy.identity), "warmup": asdict(settings),
           "texts": texts_digest(warmup_sample(texts, settings)), "version": FEATURE_VERSION}
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    path = _warmup_path(root, key)
    params = proxy.trainable_parameters()
    if not path.is_file() and proxy.adapter_state not in (None, {"warmup": key}):
        raise InputError("the proxy's adapters were already changed (another warm-up or training); a warm-up must "
                         "start from the loaded weights", fix="load a fresh proxy for this warm-up")
    proxy.adapter_state = {"warmup": key}
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        with torch.no_grad():
            for p, value in zip(params, saved["params"], strict=True):
                p.copy_(value)
        return WarmupState(list(saved["params"]), saved["m"], saved["v"], int(saved["step"]),
                           (float(saved["betas"][0]), float(saved["betas"][1])), list(saved["losses"]))
    state = adam_warmup(proxy, texts, settings, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"params": state.params, "m": state.m, "v": state.v, "step": state.step, "betas": list(state.betas),
               "losses": state.losses}
    atomic_write(path, lambda f: torch.save(payload, f))
    return state


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 (hex) of the texts' sha256 digests, in order."""
    h = hashlib.sha256()
    for text in texts:
        h.update(text_digest(text))
    return h.hexdigest()
