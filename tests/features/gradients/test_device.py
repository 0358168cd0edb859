"""Gradient features and SPICE's proxy trainer with ``device=``: the CPU spelled out is the default, to the bit;
a device that cannot be used is refused before anything loads; on a GPU (skipped without one) the rows agree
with the CPU's and share its cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tasksift.features.gradients import GradientRecipe, gradient_features, proxy_trainer, selection_gradients
from tasksift.features.gradients.warmup import WarmupSettings
from tasksift.util.errors import InputError
from tests.features.gradients.helpers import LLAMA_TEXTS

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
WARM = {"warmup": WarmupSettings(steps=2, batch_size=2), "precondition": "less"}


def _features(llama_dir: Path, cache: Path, **kwargs: object) -> np.ndarray:
    return gradient_features(LLAMA_TEXTS, model=llama_dir, proj_dim=32, cache_dir=cache, progress=False, **WARM,
                             **kwargs).matrix()


def test_device_cpu_is_the_default_to_the_bit(llama_dir: Path, tmp_path: Path) -> None:
    default = _features(llama_dir, tmp_path / "a")
    np.testing.assert_array_equal(_features(llama_dir, tmp_path / "b", device="cpu"), default)
    np.testing.assert_array_equal(_features(llama_dir, tmp_path / "c", device=torch.device("cpu")), default)
    # the device is no part of the key: the run on the CPU spelled out finds the default run's shards
    again = gradient_features(LLAMA_TEXTS, model=llama_dir, proj_dim=32, cache_dir=tmp_path / "a", progress=False,
                              device="cpu", **WARM)
    assert again.n_computed == 0 and again.n_reused == 1


def test_the_recipe_and_the_spice_trainer_take_the_device(tmp_path: Path, llama_dir: Path) -> None:
    recipe = GradientRecipe.of({}, {"proj_dim": 16, "warmup_steps": 1, "warmup_batch_size": 2})
    pool, target = selection_gradients(LLAMA_TEXTS, LLAMA_TEXTS[:2], recipe, model=llama_dir,
                                       cache_dir=tmp_path / "a", progress=False)
    pool_cpu, target_cpu = selection_gradients(LLAMA_TEXTS, LLAMA_TEXTS[:2], recipe, model=llama_dir,
                                               cache_dir=tmp_path / "b", progress=False, device="cpu")
    np.testing.assert_array_equal(pool_cpu.matrix(), pool.matrix())
    np.testing.assert_array_equal(target_cpu.matrix(), target.matrix())
    trainer = proxy_trainer(LLAMA_TEXTS, recipe, model=llama_dir, cache_dir=tmp_path / "a", progress=False,
                            device="cpu")
    assert trainer.featurizer.proxy.device == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:x", "tpu"])
def test_a_device_that_cannot_be_used_is_refused_before_loading(llama_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    def no_loading(self: object) -> None:
        raise AssertionError("the model must not load for a refused device")

    monkeypatch.setattr("tasksift.features.gradients.proxy.ProxySpec.load", no_loading)
    with pytest.raises(InputError, match=f"--device '?{device}"):
        gradient_features(LLAMA_TEXTS, model=llama_dir, cache_dir=tmp_path, progress=False, device=device)
    assert not any(tmp_path.iterdir())


# -- on a GPU ---------------------------------------------------------------------------------------------------
@needs_cuda
def test_gpu_gradient_features_agree_with_the_cpu_and_share_its_cache(llama_dir: Path, tmp_path: Path) -> None:
    cpu = _features(llama_dir, tmp_path / "cpu")
    gpu = _features(llama_dir, tmp_path / "gpu", device="cuda")
    scale = np.abs(cpu).max(axis=1, keepdims=True)
    assert np.all(np.abs(gpu - cpu) <= 1e-3 * scale)
    shared = gradient_features(LLAMA_TEXTS, model=llama_dir, proj_dim=32, cache_dir=tmp_path / "cpu",
                               progress=False, device="cuda", **WARM)
    assert shared.n_computed == 0
    np.testing.assert_array_equal(shared.matrix(), cpu)


@needs_cuda
def test_gpu_spice_trainer_steps_on_the_gpu(llama_dir: Path, tmp_path: Path) -> None:
    recipe = GradientRecipe.of({}, {"proj_dim": 16, "warmup_steps": 1, "warmup_batch_size": 2,
                                    "precondition": "adam"})
    trainer = proxy_trainer(LLAMA_TEXTS, recipe, model=llama_dir, cache_dir=tmp_path, progress=False,
                            device="cuda")
    assert trainer.featurizer.proxy.device.type == "cuda"
    rows = np.array([0, 2])
    assert np.isfinite(trainer.step(rows)) and trainer.gradients(rows).shape == (2, 16)
