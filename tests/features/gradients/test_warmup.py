"""The Adam warm-up: preconditioning rules from its moments, cached once, and proxies it changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tasksift.features.gradients import gradient_features
from tasksift.features.gradients.proxy import load_proxy, proxy_spec
from tasksift.features.gradients.warmup import WarmupSettings, cached_warmup
from tasksift.util.errors import InputError
from tests.features.gradients.helpers import LLAMA_TEXTS


def test_preconditioning_rules_use_the_warmups_adam_moments(llama_dir: Path, tmp_path: Path) -> None:
    warm = WarmupSettings(steps=3, lr=1e-2, batch_size=2, seed=0)
    spec = proxy_spec(llama_dir)
    plain = gradient_features(LLAMA_TEXTS, model=spec, proj_dim=0, warmup=warm, cache_dir=tmp_path, progress=False)
    adam = gradient_features(LLAMA_TEXTS, model=spec, proj_dim=0, warmup=warm, precondition=True,
                             cache_dir=tmp_path, progress=False)
    less = gradient_features(LLAMA_TEXTS, model=spec, proj_dim=0, warmup=warm, precondition="less",
                             cache_dir=tmp_path, progress=False)
    assert len({plain.cache_dir, adam.cache_dir, less.cache_dir}) == 3
    proxy = spec.load()
    state = cached_warmup(proxy, LLAMA_TEXTS, warm, cache_dir=tmp_path, progress=False)
    assert state.step == 3 and state.v.shape == (proxy.dim,) and float(state.v.min()) >= 0
    assert state.betas == (0.9, 0.999) and float(state.m.abs().max()) > 0
    # the warm-up trained lora_B away from zero, so lora_A's gradients are no longer zero
    assert any(float(p.abs().sum()) > 0 for p in state.params[1::2])
    g, m, v = plain.matrix().astype(np.float64), state.m.double().numpy(), state.v.double().numpy()
    v_hat = v / (1 - 0.999**3)
    np.testing.assert_allclose(adam.matrix(), g / (np.sqrt(v_hat) + 1e-8), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(less.matrix(), (0.9 * m + 0.1 * g) / np.sqrt(0.999 * v + 0.001 * g**2 + 1e-8),
                               rtol=1e-4, atol=1e-6)
    # the warmed-up weights were restored from the cache: same gradients as the cached plain features
    np.testing.assert_allclose(proxy.gradients(LLAMA_TEXTS).numpy(), plain.matrix(), rtol=1e-4, atol=1e-7)


def test_a_warmup_is_run_once_and_then_read_back(llama_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    warm = WarmupSettings(steps=2, lr=1e-2, batch_size=2)
    first = cached_warmup(load_proxy(llama_dir), LLAMA_TEXTS, warm, cache_dir=tmp_path, progress=False)

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the saved warm-up must be reused")

    monkeypatch.setattr("tasksift.features.gradients.warmup.adam_warmup", no_training)
    again = cached_warmup(load_proxy(llama_dir), LLAMA_TEXTS, warm, cache_dir=tmp_path, progress=False)
    torch.testing.assert_close(again.v, first.v)
    torch.testing.assert_close(again.m, first.m)
    assert again.losses == first.losses and len(first.losses) == 2


def test_a_proxy_whose_adapters_changed_cannot_fill_another_cache_entry(llama_dir: Path, tmp_path: Path) -> None:
    proxy = load_proxy(llama_dir)
    warm = WarmupSettings(steps=1, batch_size=2)
    gradient_features(LLAMA_TEXTS, model=proxy, proj_dim=8, warmup=warm, cache_dir=tmp_path, progress=False)
    with pytest.raises(InputError, match="changed by a warm-up"):
        gradient_features(LLAMA_TEXTS, model=proxy, proj_dim=8, cache_dir=tmp_path, progress=False)
    with pytest.raises(InputError, match="already changed"):
        cached_warmup(proxy, LLAMA_TEXTS, WarmupSettings(steps=2, batch_size=2), cache_dir=tmp_path, progress=False)
    # the same warm-up again is fine: its saved weights are read back
    again = gradient_features(LLAMA_TEXTS, model=proxy, proj_dim=8, warmup=warm, precondition="less",
                              cache_dir=tmp_path, progress=False)
    assert again.shape == (len(LLAMA_TEXTS), 8)
