"""TSDS over a pool larger than memory: the prefetch, the exact densities (brute force and pruned) and the
cosine normalisation read a memory-mapped or float16 pool block by block, and the selection is the one of the
same rows in memory, to the bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasksift.index import blocks, searcher
from tasksift.selectors.base import Context
from tasksift.selectors.tsds import TSDSSelector


def clustered(seed: int, n: int, dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim))
    x = centres[rng.integers(0, 8, n)] + 0.35 * rng.normal(size=(n, dim))
    x[::9] = x[1::9][: len(x[::9])]  # exact duplicates: ties in the lists and dense spots
    return x.astype(np.float32)


def same(a: TSDSSelector, b: TSDSSelector) -> None:
    assert np.array_equal(a.selection_.indices, b.selection_.indices)
    assert np.array_equal(a.selection_.weights, b.selection_.weights)
    assert np.array_equal(a.probability_.probability, b.probability_.probability)
    assert np.array_equal(a.densities_, b.densities_)


@pytest.mark.parametrize("prune", [0, 10**9])  # the pruned range search (bfloat16 screen) or the brute force
@pytest.mark.parametrize("params", [{"metric": "l2", "sigma": 1.2}, {"metric": "cosine", "sigma": 0.3, "C": 0.5},
                                    {"density": "reference", "sigma": 1.2}, {"index": "flat", "sigma": 1.0}])
def test_tsds_selects_the_same_from_a_memory_map_read_in_tiny_blocks(tmp_path: Path, prune: int, params: dict,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(searcher, "PRUNE_MIN_ROWS", prune)
    monkeypatch.setattr(blocks, "block_rows", lambda dim: 101)
    x, q = clustered(0, 2500), clustered(1, 12)
    np.save(tmp_path / "pool.npy", x)
    mapped = np.load(tmp_path / "pool.npy", mmap_mode="r")
    in_memory = TSDSSelector(80, seed=1, **params).fit(x, q, ctx=Context())
    on_disk = TSDSSelector(80, seed=1, **params).fit(mapped, q, ctx=Context())
    same(on_disk, in_memory)
    index = on_disk.selection_.manifest["index"]
    assert index["memory_mapped"] and index["block_rows"] == 101 and index["passes"] >= 1


def test_tsds_on_float16_rows_selects_as_on_their_float32_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(searcher, "PRUNE_MIN_ROWS", 0)
    x, q = clustered(2, 2000), clustered(3, 10)
    x16 = x.astype(np.float16)
    for params in ({"sigma": 1.2}, {"metric": "cosine", "sigma": 0.3, "C": 0.5}):
        half = TSDSSelector(60, seed=2, **params).fit(x16, q, ctx=Context())
        wide = TSDSSelector(60, seed=2, **params).fit(x16.astype(np.float32), q, ctx=Context())
        same(half, wide)
