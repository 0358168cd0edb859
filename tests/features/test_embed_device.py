"""Embeddings with ``device=``: the CPU spelled out is the default, to the bit; the device is no part of the cache
key; a device that cannot be used is refused before the model loads; on a GPU (skipped without one) float16
rows agree with the CPU's and share its cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tasksift.features import Embedder, embed_texts
from tasksift.util.errors import InputError

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TEXTS = ["The central bank raised interest rates.", "Short.", "The striker scored twice in the second half, "
         "and the fans sang until the final whistle.", "Oil prices climbed.", "A new phone goes on sale."]


def test_device_cpu_is_the_default_to_the_bit(tmp_path: Path, embedder: Embedder) -> None:
    default = embed_texts(TEXTS, model=embedder, cache_dir=tmp_path / "a", progress=False).matrix()
    spelled = embed_texts(TEXTS, cache_dir=tmp_path / "b", progress=False, device="cpu").matrix()
    np.testing.assert_array_equal(spelled, default)
    assert Embedder(device="cpu").device == Embedder().device == torch.device("cpu")
    # an Embedder's own device agrees with the one given
    shared = embed_texts(TEXTS, model=embedder, cache_dir=tmp_path / "a", progress=False, device="cpu")
    assert shared.n_computed == 0


def test_the_device_is_no_part_of_the_cache_key(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = Embedder()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU that is never used: nothing loads
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    gpu = Embedder(device="cuda")
    assert gpu.device == torch.device("cuda", 0) and gpu.half and not cpu.half
    assert gpu.cache_settings() == cpu.cache_settings() and gpu.cache_settings()["dtype"] == "float32"
    with pytest.raises(ValueError, match="device given both"):
        embed_texts(TEXTS, model=cpu, device="cuda", progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "cuda:x", "tpu"])
def test_a_device_that_cannot_be_used_is_refused_in_one_line(tmp_path: Path, device: str) -> None:
    with pytest.raises(InputError) as err:
        embed_texts(TEXTS, cache_dir=tmp_path, progress=False, device=device)
    assert err.value.one_line().startswith("--device") and not any(tmp_path.iterdir())


# -- on a GPU ---------------------------------------------------------------------------------------------------
@needs_cuda
def test_gpu_float16_rows_agree_with_the_cpu_and_share_its_cache(tmp_path: Path, embedder: Embedder) -> None:
    cpu = embed_texts(TEXTS, model=embedder, cache_dir=tmp_path / "cpu", progress=False).matrix()
    gpu_embedder = Embedder(device="cuda")
    gpu = embed_texts(TEXTS, model=gpu_embedder, cache_dir=tmp_path / "gpu", progress=False).matrix()
    assert next(gpu_embedder.model.parameters()).dtype == torch.float16 and gpu.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(gpu, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(gpu, cpu, atol=1e-2)
    assert float(np.min(np.sum(gpu * cpu, axis=1))) > 0.999
    shared = embed_texts(TEXTS, cache_dir=tmp_path / "cpu", progress=False, device="cuda")
    assert shared.n_computed == 0
    np.testing.assert_array_equal(shared.matrix(), cpu)
