"""FeatureCache with a cheap deterministic feature function: reuse, content keys, crashes, resumption."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasksift.features import FeatureCache, default_cache_root, settings_key, shard_key
from tasksift.util.io import HOST

DIM = 8


def fake_vector(text: str) -> np.ndarray:
    """A deterministic DIM-vector derived from the text's hash."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return np.frombuffer(digest[:DIM], dtype=np.uint8).astype(np.float32) / 255.0


class FakeFn:
    """Feature function that records every chunk it is given and can fail on a chosen call."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise RuntimeError("boom")
        return np.stack([fake_vector(t) for t in texts])


def texts_of(n: int, prefix: str = "text") -> list[str]:
    return [f"{prefix} number {i}" for i in range(n)]


def expected(texts: list[str]) -> np.ndarray:
    return np.stack([fake_vector(t) for t in texts])


def make_cache(root: Path, shard_size: int = 4, **settings: object) -> FeatureCache:
    return FeatureCache(root, "fake", {"model": "hash", "dim": DIM, "shard_size": shard_size, **settings})


def markers(cache: FeatureCache) -> set[str]:
    return {p.stem for p in cache.dir.glob("*.done")}


def test_layout_and_second_run_computes_nothing(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    texts = texts_of(10)  # shards of 4, 4, 2
    fn = FakeFn()
    first = cache.compute(texts, fn, progress=False)
    assert (first.n_computed, first.n_reused, first.n_shards) == (3, 0, 3)
    assert [len(c) for c in fn.calls] == [4, 4, 2]
    assert first.shape == (10, DIM)
    np.testing.assert_array_equal(first.matrix(), expected(texts))
    assert first.matrix().dtype == np.float32

    assert cache.dir == tmp_path / "fake" / settings_key(cache.settings)
    assert json.loads((cache.dir / "settings.json").read_text()) == cache.settings
    for key in first.shard_keys:
        marker = json.loads((cache.dir / f"{key}.done").read_text())
        assert marker["dim"] == DIM and marker["rows"] in (4, 2) and marker["seconds"] >= 0
        assert np.load(cache.dir / f"{key}.npy").dtype == np.float32

    again = FakeFn()
    second = make_cache(tmp_path).compute(texts, again, progress=False)
    assert (second.n_computed, second.n_reused) == (0, 3)
    assert again.calls == []
    np.testing.assert_array_equal(second.matrix(), first.matrix())
    streamed = list(second.iter_shards())
    assert all(isinstance(s, np.memmap) for s in streamed)
    np.testing.assert_array_equal(np.concatenate(streamed), first.matrix())

    info = second.info()
    assert info["shards"] == {"total": 3, "computed": 0, "reused": 3, "shard_size": 4}
    assert info["cache_dir"] == str(cache.dir) and info["settings"] == cache.settings and info["dim"] == DIM
    json.dumps(info)


def test_settings_key_is_canonical_and_separates_settings(tmp_path: Path) -> None:
    a = FeatureCache(tmp_path, "fake", {"model": "m", "normalize": True, "shard_size": 4})
    b = FeatureCache(tmp_path, "fake", {"shard_size": 4, "normalize": True, "model": "m"})
    c = FeatureCache(tmp_path, "fake", {"model": "m", "normalize": False, "shard_size": 4})
    d = FeatureCache(tmp_path, "fake", {"model": "m", "normalize": True, "shard_size": 5})
    assert a.dir == b.dir
    assert len({a.dir, c.dir, d.dir}) == 3
    assert FeatureCache(tmp_path, "other", {"model": "m", "normalize": True, "shard_size": 4}).dir != a.dir
    fn = FakeFn()
    a.compute(texts_of(4), fn, progress=False)
    assert c.compute(texts_of(4), fn, progress=False).n_computed == 1  # other settings: nothing shared


def test_shard_keys_depend_on_content_only(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    texts = texts_of(12)
    keys = [key for _, _, key in cache.plan(texts)]
    assert keys[0] == shard_key(texts[:4])
    assert len(set(keys)) == 3

    changed = list(texts)
    changed[5] = "something else"
    new_keys = [key for _, _, key in cache.plan(changed)]
    assert new_keys[0] == keys[0] and new_keys[2] == keys[2] and new_keys[1] != keys[1]

    assert shard_key(["a", "b"]) != shard_key(["b", "a"])
    assert shard_key(["ab"]) != shard_key(["a", "b"])

    # Another dataset that starts with the same rows reuses those shards, under the same keys.
    cache.compute(texts, FakeFn(), progress=False)
    other = texts[:8] + texts_of(4, prefix="other")
    fn = FakeFn()
    result = cache.compute(other, fn, progress=False)
    assert (result.n_reused, result.n_computed) == (2, 1)
    assert fn.calls == [texts_of(4, prefix="other")]
    np.testing.assert_array_equal(result.matrix(), expected(other))


def test_appending_rows_reuses_earlier_shards(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    base = texts_of(10)
    cache.compute(base, FakeFn(), progress=False)
    grown = base + texts_of(5, prefix="new")
    fn = FakeFn()
    result = cache.compute(grown, fn, progress=False)
    # shards 0-1 are full and unchanged; the old partial shard (rows 8-9) now holds rows 8-11: recomputed.
    assert (result.n_reused, result.n_computed) == (2, 2)
    assert fn.calls == [grown[8:12], grown[12:15]]
    np.testing.assert_array_equal(result.matrix(), expected(grown))


def test_duplicate_shards_are_computed_once(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    texts = texts_of(4) * 3
    fn = FakeFn()
    result = cache.compute(texts, fn, progress=False)
    assert len(fn.calls) == 1 and (result.n_computed, result.n_reused) == (1, 2)
    np.testing.assert_array_equal(result.matrix(), expected(texts))


def test_markerless_or_corrupt_shards_are_recomputed(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    texts = texts_of(12)
    first = cache.compute(texts, FakeFn(), progress=False)
    k0, k1, k2 = first.shard_keys

    # Crash between writing the .npy and its marker: the file is there, the marker is not.
    cache.marker_path(k1).unlink()
    # A corrupt shard behind a marker (file truncated): must not be trusted.
    data = cache.shard_path(k2).read_bytes()
    cache.shard_path(k2).write_bytes(data[: len(data) // 2])
    # A truncated temporary file left by a dead process on this host, and one by a live one.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    stale = cache.dir / f"{k0}.npy.{HOST}.{int(dead.stdout)}.tmp"
    stale.write_bytes(b"\x93NUMPY trunc")
    live = cache.dir / f"{k0}.npy.{HOST}.{os.getppid()}.tmp"
    live.write_bytes(b"in flight")

    fn = FakeFn()
    second = cache.compute(texts, fn, progress=False)
    assert (second.n_computed, second.n_reused) == (2, 1)
    assert fn.calls == [texts[4:8], texts[8:12]]
    np.testing.assert_array_equal(second.matrix(), expected(texts))
    assert markers(cache) == {k0, k1, k2}
    assert not stale.exists()
    assert live.exists()  # a live process's temporary file is left alone


def test_exception_in_fn_keeps_finished_shards_and_rerun_resumes(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    texts = texts_of(20)  # 5 shards
    keys = [key for _, _, key in cache.plan(texts)]
    failing = FakeFn(fail_on_call=3)
    with pytest.raises(RuntimeError, match="boom"):
        cache.compute(texts, failing, progress=False)
    assert markers(cache) == set(keys[:2])
    assert not cache.shard_path(keys[2]).exists()
    assert list(cache.dir.glob("*.tmp")) == []

    fn = FakeFn()
    result = cache.compute(texts, fn, progress=False)
    assert (result.n_computed, result.n_reused) == (3, 2)
    assert fn.calls == [texts[8:12], texts[12:16], texts[16:20]]
    np.testing.assert_array_equal(result.matrix(), expected(texts))


def test_progress_reporting_fn_and_bad_outputs(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    texts = texts_of(6)
    seen: list[int] = []

    def reporting(chunk: list[str], advance) -> np.ndarray:  # noqa: ANN001 - the callback
        for _ in chunk:
            advance(1)
            seen.append(1)
        return expected(chunk)

    result = cache.compute(texts, reporting, progress=True, reports_progress=True, desc="fake")
    assert len(seen) == 6
    np.testing.assert_array_equal(result.matrix(), expected(texts))

    fresh = make_cache(tmp_path / "bad")
    with pytest.raises(ValueError, match="shape"):
        fresh.compute(texts, lambda chunk: np.zeros((len(chunk) + 1, DIM)), progress=False)
    with pytest.raises(ValueError, match="NaN"):
        fresh.compute(texts, lambda chunk: np.full((len(chunk), DIM), np.nan), progress=False)
    with pytest.raises(ValueError, match="columns"):
        fresh.compute(texts, lambda chunk: np.zeros((len(chunk), DIM)), progress=False, dim=DIM + 1)
    assert markers(fresh) == set()
    with pytest.raises(TypeError, match="text 2"):
        fresh.compute(["a", "b", 3], FakeFn(), progress=False)  # type: ignore[list-item]


def test_empty_input_and_bad_arguments(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    empty = cache.compute([], FakeFn(), progress=False, dim=DIM)
    assert empty.shape == (0, DIM) and empty.matrix().shape == (0, DIM) and empty.n_shards == 0
    with pytest.raises(ValueError, match="shard_size"):
        FeatureCache(tmp_path, "fake", {"shard_size": 0})
    with pytest.raises(ValueError, match="kind"):
        FeatureCache(tmp_path, "../escape", {})
    with pytest.raises(ValueError, match="JSON"):
        FeatureCache(tmp_path, "fake", {"x": float("nan")})


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TASKSIFT_CACHE", str(tmp_path / "c"))
    assert default_cache_root() == tmp_path / "c"
    assert FeatureCache(None, "fake", {}).dir.parent == tmp_path / "c" / "fake"
    monkeypatch.delenv("TASKSIFT_CACHE")
    assert default_cache_root() == Path.home() / ".cache" / "tasksift"
