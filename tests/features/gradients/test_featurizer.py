"""Gradient features in the cache: projected gradients, reuse, resumption, refused settings, stable keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasksift.features.gradients.featurizer import GradientFactory, GradientFeaturizer, gradient_features
from tasksift.features.gradients.projection import RandomProjection
from tasksift.features.gradients.proxy import load_proxy
from tasksift.features.gradients.warmup import WarmupSettings
from tasksift.util.errors import InputError
from tasksift.util.hashing import settings_key
from tests.features.gradients.helpers import LLAMA_TEXTS


def test_gradient_features_are_projected_gradients_and_cached(llama_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    texts = LLAMA_TEXTS * 3
    first = gradient_features(texts, model=llama_dir, proj_dim=64, shard_size=4, batch_size=3, cache_dir=tmp_path,
                              progress=False)
    assert first.shape == (15, 64) and first.n_computed == 4 and first.kind == "gradients"
    proxy = load_proxy(llama_dir)
    expected = RandomProjection(proxy.dim, 64, seed=0).project(proxy.gradients(texts))
    np.testing.assert_allclose(first.matrix(), expected, rtol=1e-4, atol=1e-6)

    def no_loading(self: object) -> None:
        raise AssertionError("a fully cached run must not load the model")

    monkeypatch.setattr("tasksift.features.gradients.proxy.ProxySpec.load", no_loading)
    again = gradient_features(texts, model=llama_dir, proj_dim=64, shard_size=4, cache_dir=tmp_path, progress=False)
    assert again.n_computed == 0 and again.n_reused == 4
    np.testing.assert_array_equal(again.matrix(), first.matrix())


def test_an_interrupted_run_resumes_at_the_shard_it_was_computing(llama_dir: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"{t} {i}" for i, t in enumerate(LLAMA_TEXTS * 2)]
    original = GradientFeaturizer.__call__
    calls: list[int] = []

    def dies_on_the_second_shard(self: GradientFeaturizer, chunk: list[str], advance: object = None) -> np.ndarray:
        calls.append(len(chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, chunk, advance)

    monkeypatch.setattr(GradientFeaturizer, "__call__", dies_on_the_second_shard)
    with pytest.raises(KeyboardInterrupt):
        gradient_features(texts, model=llama_dir, proj_dim=8, shard_size=3, cache_dir=tmp_path, progress=False)
    monkeypatch.setattr(GradientFeaturizer, "__call__", original)
    resumed = gradient_features(texts, model=llama_dir, proj_dim=8, shard_size=3, cache_dir=tmp_path,
                                progress=False)
    assert resumed.n_reused == 1 and resumed.n_computed == 3
    fresh = gradient_features(texts, model=llama_dir, proj_dim=8, shard_size=3, cache_dir=tmp_path / "fresh",
                              progress=False)
    np.testing.assert_allclose(resumed.matrix(), fresh.matrix(), rtol=1e-5, atol=1e-7)


def test_preconditioning_without_a_warmup_is_refused(llama_dir: Path) -> None:
    with pytest.raises(InputError, match="warm-up"):
        gradient_features(LLAMA_TEXTS, model=llama_dir, precondition=True, progress=False)
    with pytest.raises(InputError, match="preconditioning rule"):
        gradient_features(LLAMA_TEXTS, model=llama_dir, precondition="sgd", progress=False)


@pytest.mark.parametrize(("settings", "named"), [
    ({"proj_dim": -1}, "proj_dim=-1"), ({"projection": "sparse"}, "rademacher, gaussian"),
    ({"shard_size": 0}, "shard_size=0"), ({"batch_size": True}, "batch_size=True"), ({"seed": -2}, "seed=-2"),
    ({"lora_r": 0}, "lora_r=0"), ({"max_length": 1}, "max_length=1"), ({"params": "all"}, "lora, linear"),
])
def test_bad_settings_are_input_errors_that_name_them(llama_dir: Path, settings: dict, named: str) -> None:
    with pytest.raises(InputError, match="gradient features: parameter") as err:
        gradient_features(LLAMA_TEXTS, model=llama_dir, progress=False, **settings)
    assert named in str(err.value)


IDENTITY = {"name": "tiny", "path": "/models/tiny", "fingerprint": "f" * 64, "kind": "causal-lm", "params": "lora",
            "target_modules": ["q_proj", "v_proj"], "max_length": 128, "objective": "causal-lm", "lora_r": 8,
            "lora_alpha": 16, "lora_seed": 0}


@pytest.mark.parametrize(("chain", "key"), [
    ({"warmup": WarmupSettings(steps=8), "rule": "less", "proj_dim": 1024},
     "1f7045c352df54cf9cc59b3eaaea0ab2f0451f048de21892446525cae22f3d99"),
    ({"warmup": None, "rule": None, "proj_dim": 0}, "9e3afb9cd3c2b260b399a89e4f015d762f8934af72cd6cc67e11f68ee57a362c"),
    ({"warmup": WarmupSettings(steps=0), "rule": None, "proj_dim": None},
     "9e3afb9cd3c2b260b399a89e4f015d762f8934af72cd6cc67e11f68ee57a362c"),
])
def test_cache_keys_of_gradient_features_stay_the_same(chain: dict, key: str) -> None:
    """Caches written before stay readable: the settings key of a chain is pinned."""
    factory = GradientFactory.plan(IDENTITY, None, warmup_texts=["alpha", "beta", "gamma"], seed=0,
                                   projection="rademacher", batch_size=16, cache_dir=None, **chain)
    assert settings_key({**factory.settings, "shard_size": 256}) == key
    assert factory.settings["proxy"] == {k: v for k, v in IDENTITY.items() if k not in ("name", "path")}
