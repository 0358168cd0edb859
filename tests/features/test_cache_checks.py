"""Checked caches: a damaged shard (flipped or overwritten bytes, NaN, truncation, two shards swapped) is
recomputed, never served, and the result equals a clean run; markers written before checksums still work."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import numpy as np
import pytest

from tasksift.features import FeatureCache
from tasksift.features.shards import ALGORITHM, checksum
from tasksift.util.errors import InputError
from tests.features.test_cache import DIM, FakeFn, expected, make_cache, texts_of

TEXTS = texts_of(12)  # three shards of four rows


def warm(tmp_path: Path) -> tuple[FeatureCache, list[str]]:
    cache = make_cache(tmp_path)
    first = cache.compute(TEXTS, FakeFn(), progress=False)
    return cache, first.shard_keys


def data_offset(path: Path) -> int:
    return path.stat().st_size - 4 * DIM * 4  # four rows of DIM float32 values end the file


def flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[data_offset(path) + at] ^= 0x10
    path.write_bytes(bytes(data))


def overwrite(path: Path, at: int, payload: bytes) -> None:
    data = bytearray(path.read_bytes())
    start = data_offset(path) + at
    data[start:start + len(payload)] = payload
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def nan_bytes(path: Path) -> None:
    overwrite(path, 8, struct.pack("<2f", float("nan"), float("inf")))


def finite_bytes(path: Path) -> None:
    overwrite(path, 0, np.full(DIM * 3, 42.0, dtype=np.float32).tobytes())  # finite, plausible-looking values


DAMAGE = {"flipped byte": lambda p: flip_byte(p, 5), "truncated": truncate, "NaN bytes": nan_bytes,
          "overwritten with finite values": finite_bytes}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("read", ["matrix", "iter_shards", "verify"])
def test_a_damaged_shard_is_recomputed_not_served(tmp_path: Path, damage: str, read: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    cache, keys = warm(tmp_path)
    DAMAGE[damage](cache.shard_path(keys[1]))
    fn = FakeFn()
    with caplog.at_level(logging.WARNING, logger="tasksift"):
        result = cache.compute(TEXTS, fn, progress=False)
        if read == "matrix":
            got = result.matrix()
        elif read == "iter_shards":
            got = np.concatenate(list(result.iter_shards()))
        else:
            assert result.verify() == (0 if damage == "truncated" else 1)
            got = result.matrix()
    np.testing.assert_array_equal(got, expected(TEXTS))
    assert fn.calls == [TEXTS[4:8]]  # only the damaged shard, once
    assert (result.n_computed, result.n_reused) == (1, 2)
    if damage != "truncated":  # a truncated file fails the cheap check and is recomputed without a warning
        assert "failed its check" in caplog.text and keys[1] in caplog.text
    again = FakeFn()
    clean = cache.compute(TEXTS, again, progress=False)
    np.testing.assert_array_equal(clean.matrix(), expected(TEXTS))
    assert again.calls == []


def test_two_swapped_shards_are_both_recomputed(tmp_path: Path) -> None:
    cache, keys = warm(tmp_path)
    a, b = cache.shard_path(keys[0]), cache.shard_path(keys[1])
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    fn = FakeFn()
    result = cache.compute(TEXTS, fn, progress=False)
    np.testing.assert_array_equal(result.matrix(), expected(TEXTS))
    assert sorted(map(tuple, fn.calls)) == sorted([tuple(TEXTS[0:4]), tuple(TEXTS[4:8])])
    assert result.n_computed == 2


def test_the_marker_records_a_checksum_of_the_rows(tmp_path: Path) -> None:
    cache, keys = warm(tmp_path)
    for i, key in enumerate(keys):
        marker = json.loads(cache.marker_path(key).read_text())
        assert marker["checksum"] == checksum(expected(TEXTS[4 * i:4 * i + 4]))
        assert marker["checksum"].startswith(f"{ALGORITHM}:")
        assert cache.shard_path(key).name == f"{key}.npy"  # names and keys unchanged by checksums


def legacy(cache: FeatureCache, key: str) -> None:
    """Rewrite the marker of ``key`` the way markers were written before checksums."""
    marker = json.loads(cache.marker_path(key).read_text())
    del marker["checksum"]
    cache.marker_path(key).write_text(json.dumps(marker))


def test_markers_without_a_checksum_are_read_and_checked_by_the_old_rule(tmp_path: Path) -> None:
    cache, keys = warm(tmp_path)
    for key in keys:
        legacy(cache, key)
    before = {key: cache.marker_path(key).read_text() for key in keys}
    fn = FakeFn()
    result = cache.compute(TEXTS, fn, progress=False)
    np.testing.assert_array_equal(result.matrix(), expected(TEXTS))
    assert fn.calls == [] and result.checksums == [None, None, None]
    assert {key: cache.marker_path(key).read_text() for key in keys} == before  # a read writes nothing

    nan_bytes(cache.shard_path(keys[2]))  # the old rule still refuses a non-finite value ...
    result = cache.compute(TEXTS, fn, progress=False)
    np.testing.assert_array_equal(result.matrix(), expected(TEXTS))
    assert fn.calls == [TEXTS[8:12]]
    assert "checksum" in json.loads(cache.marker_path(keys[2]).read_text())  # ... and the rewrite adds a checksum
    assert "checksum" not in json.loads(cache.marker_path(keys[0]).read_text())


def test_a_blake2b_checksum_is_verified_too(tmp_path: Path) -> None:
    import hashlib

    cache, keys = warm(tmp_path)
    marker = json.loads(cache.marker_path(keys[0]).read_text())
    rows = expected(TEXTS[:4])
    marker["checksum"] = "blake2b:" + hashlib.blake2b(rows.tobytes(), digest_size=16).hexdigest()
    cache.marker_path(keys[0]).write_text(json.dumps(marker))
    fn = FakeFn()
    np.testing.assert_array_equal(cache.compute(TEXTS, fn, progress=False).matrix(), expected(TEXTS))
    assert fn.calls == []
    flip_byte(cache.shard_path(keys[0]), 3)
    np.testing.assert_array_equal(cache.compute(TEXTS, fn, progress=False).matrix(), expected(TEXTS))
    assert fn.calls == [TEXTS[:4]]


def test_engines_see_damaged_shards_as_unfinished_and_collect_never_serves_one(tmp_path: Path) -> None:
    cache, keys = warm(tmp_path)
    flip_byte(cache.shard_path(keys[2]), 0)
    assert cache.unfinished(TEXTS) == [(8, 12, keys[2])]  # an engine recomputes it
    collected = cache.collect(TEXTS, n_computed=0, rows_computed=0, compute_seconds=0.0, seconds=0.0)
    with pytest.raises(InputError, match="failed its check"):
        collected.matrix()
    assert not cache.marker_path(keys[2]).exists()  # so the next run recomputes it


def test_a_longer_file_or_a_header_that_disagrees_is_unfinished(tmp_path: Path) -> None:
    cache, keys = warm(tmp_path)
    path = cache.shard_path(keys[0])
    path.write_bytes(path.read_bytes() + b"\0\0\0\0")
    np.save(cache.shard_path(keys[1]), expected(TEXTS[4:8]).astype(np.float64))
    assert [key for _, _, key in cache.unfinished(TEXTS)] == keys[:2]
    fn = FakeFn()
    np.testing.assert_array_equal(cache.compute(TEXTS, fn, progress=False).matrix(), expected(TEXTS))
    assert fn.calls == [TEXTS[0:4], TEXTS[4:8]]
