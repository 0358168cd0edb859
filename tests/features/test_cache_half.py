"""The feature cache in float16 (half the disk and memory) and the memory-mapped join of a cache's shards."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import tasksift
from tasksift.features import FeatureCache
from tasksift.features import shards as shards_module
from tasksift.features.shards import layout_ok

DIM = 8


def fake(texts: list[str]) -> np.ndarray:
    rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:DIM], dtype=np.uint8) for t in texts]
    return np.stack(rows).astype(np.float32) / 7.0


TEXTS = [f"text {i}" for i in range(23)]


def test_a_float16_cache_stores_half_the_bytes_under_its_own_key(tmp_path: Path) -> None:
    wide = FeatureCache(tmp_path, "emb", {"m": 1, "dtype": "float32", "shard_size": 5})
    half = FeatureCache(tmp_path, "emb", {"m": 1, "dtype": "float16", "shard_size": 5}, dtype="float16")
    a, b = wide.compute(TEXTS, fake, progress=False), half.compute(TEXTS, fake, progress=False)
    assert wide.key != half.key
    assert b.matrix().dtype == np.float16 and np.array_equal(b.matrix(), a.matrix().astype(np.float16))
    sizes = [p.stat().st_size - 128 for p in b.shard_paths], [p.stat().st_size - 128 for p in a.shard_paths]
    assert [2 * s for s in sizes[0]] == sizes[1]
    again = FeatureCache(tmp_path, "emb", {"m": 1, "dtype": "float16", "shard_size": 5}, dtype="float16")
    assert again.compute(TEXTS, fake, progress=False).n_computed == 0
    # a float16 shard is never taken for a float32 one, and the other way round
    assert not layout_ok(b.shard_paths[0], 5, DIM) and layout_ok(b.shard_paths[0], 5, DIM, np.float16)
    with pytest.raises(ValueError, match="dtype"):
        FeatureCache(tmp_path, "emb", {"m": 1}, dtype="bfloat16")


def test_a_value_beyond_float16_range_is_refused(tmp_path: Path) -> None:
    half = FeatureCache(tmp_path, "emb", {"dtype": "float16"}, dtype="float16")
    with pytest.raises(ValueError, match="NaN or infinite"):
        half.compute(["a"], lambda t: np.full((1, DIM), 1e6, dtype=np.float32), progress=False)


def test_a_corrupted_float16_shard_is_recomputed(tmp_path: Path) -> None:
    half = FeatureCache(tmp_path, "emb", {"dtype": "float16", "shard_size": 5}, dtype="float16")
    first = half.compute(TEXTS, fake, progress=False)
    path = first.shard_paths[1]
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    again = half.compute(TEXTS, fake, progress=False)
    assert np.array_equal(again.matrix(), fake(TEXTS).astype(np.float16)) and again.n_computed == 1


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_mapped_joins_the_checked_shards_once_and_serves_them_from_disk(tmp_path: Path, dtype: str) -> None:
    cache = FeatureCache(tmp_path, "emb", {"dtype": dtype, "shard_size": 4}, dtype=dtype)
    features = cache.compute(TEXTS, fake, progress=False)
    joined = features.mapped()
    assert isinstance(joined, np.memmap) and joined.dtype == np.dtype(dtype)
    assert np.array_equal(joined, features.matrix())
    path = Path(joined.filename)
    assert path.parent == cache.dir / "joined" and path.with_suffix(".done").exists()
    stamp = path.stat().st_mtime_ns
    del joined
    assert np.array_equal(features.mapped(), features.matrix()) and path.stat().st_mtime_ns == stamp  # reused
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01  # a flipped bit in the joined file: it is written again, never served
    path.write_bytes(bytes(raw))
    assert np.array_equal(features.mapped(), features.matrix())


def test_array_maps_a_pool_from_mapped_min_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    features = FeatureCache(tmp_path, "emb", {"shard_size": 4}).compute(TEXTS, fake, progress=False)
    assert not isinstance(features.array(), np.memmap)
    monkeypatch.setattr(shards_module, "MAPPED_MIN_BYTES", len(TEXTS) * DIM * 4)
    assert isinstance(features.array(), np.memmap)


def test_select_embeds_into_a_float16_cache_with_the_dtype_feature_setting(tmp_path: Path) -> None:
    pool = [{"text": f"sentence number {i} about {'cats' if i % 2 else 'ships'}"} for i in range(30)]
    target = [{"text": "a cat"}]
    half = tasksift.select(pool, target, method="knn", budget=5, cache_dir=tmp_path, features={"dtype": "float16"})
    wide = tasksift.select(pool, target, method="knn", budget=5, cache_dir=tmp_path)
    info = half.manifest["features"]["pool"]
    assert info["settings"]["dtype"] == "float16"
    assert info["settings_key"] != wide.manifest["features"]["pool"]["settings_key"]
    assert len(set(half.indices.tolist()) & set(wide.indices.tolist())) >= 4
    with pytest.raises(tasksift.InputError, match="dtype"):
        tasksift.select(pool, target, method="knn", budget=5, cache_dir=tmp_path, features={"dtype": "int8"})
