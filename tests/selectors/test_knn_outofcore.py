"""kNN over a pool larger than memory: a memory-mapped or float16 pool is searched block by block, and the
selection is the one of the same rows in memory, to the bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tasksift
from tasksift.index import blocks
from tasksift.selectors.knn import KNNSelector


def clustered(seed: int, n: int, dim: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, dim))
    return (centres[rng.integers(0, 6, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_knn_selects_the_same_from_a_memory_map_read_in_tiny_blocks(tmp_path: Path, metric: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocks, "block_rows", lambda dim: 37)
    x, q = clustered(0, 2000), clustered(1, 15)
    np.save(tmp_path / "pool.npy", x)
    in_memory = KNNSelector(120, metric=metric, index="flat").fit(x, q).selection_
    on_disk = KNNSelector(120, metric=metric, index="auto").fit(np.load(tmp_path / "pool.npy", mmap_mode="r"),
                                                                 q).selection_
    assert np.array_equal(on_disk.indices, in_memory.indices)
    assert np.array_equal(on_disk.scores, in_memory.scores)
    assert on_disk.reasons == in_memory.reasons
    assert on_disk.manifest["index"]["block_rows"] == 37 and on_disk.manifest["index"]["memory_mapped"]


def test_knn_through_select_on_float16_vectors_keeps_them_mapped_and_selects_as_their_float32_values(
        tmp_path: Path) -> None:
    x16, q = clustered(2, 1500).astype(np.float16), clustered(3, 10)
    np.save(tmp_path / "pool16.npy", x16)
    np.save(tmp_path / "target.npy", q)
    half = tasksift.select(pool_vectors=tmp_path / "pool16.npy", target_vectors=tmp_path / "target.npy",
                           method="knn", budget=50, index="flat")
    wide = tasksift.select(pool_vectors=x16.astype(np.float32), target_vectors=q, method="knn", budget=50,
                           index="flat")
    assert np.array_equal(half.indices, wide.indices) and np.array_equal(half.scores, wide.scores)
    assert half.manifest["index"]["pool_dtype"] == "float16" and half.manifest["index"]["memory_mapped"]
    assert "pool_dtype" not in wide.manifest["index"]  # a float32 pool in memory: faiss's flat index
