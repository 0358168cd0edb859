"""Checked caches: a damaged shard (flipped or overwritten bytes, NaN, truncation, two shards swapped) is
recomputed, never served, and the result equals a clean run; markers written before checksums still work."""

from __future__ import annotations

import errno
import json
import logging
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tasksift.cli.app import app
from tasksift.features import FeatureCache
from tasksift.features.shards import ALGORITHM, checksum
from tasksift.util.errors import InputError
from tests.conftest import write_jsonl
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
@pytest.mark.parametrize("read", ["matrix (inline hash)", "matrix (helper thread)", "iter_shards", "verify"])
def test_a_damaged_shard_is_recomputed_not_served(tmp_path: Path, damage: str, read: str,
                                                  caplog: pytest.LogCaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tasksift.features.shards.spare_core", lambda: read == "matrix (helper thread)")
    cache, keys = warm(tmp_path)
    DAMAGE[damage](cache.shard_path(keys[1]))
    fn = FakeFn()
    with caplog.at_level(logging.WARNING, logger="tasksift"):
        result = cache.compute(TEXTS, fn, progress=False)
        if read.startswith("matrix"):
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


def damage_every_way(cache_dir: Path, keys: list[str]) -> None:
    """One shard flipped, one with NaN bytes, one truncated, two swapped."""
    path = {key: cache_dir / f"{key}.npy" for key in keys}
    data = bytearray(path[keys[0]].read_bytes())
    data[-100] ^= 0x40
    path[keys[0]].write_bytes(bytes(data))
    data = bytearray(path[keys[1]].read_bytes())
    data[-16:-8] = struct.pack("<2f", float("nan"), float("nan"))
    path[keys[1]].write_bytes(bytes(data))
    path[keys[2]].write_bytes(path[keys[2]].read_bytes()[:-64])
    a, b = path[keys[3]].read_bytes(), path[keys[4]].read_bytes()
    path[keys[3]].write_bytes(b)
    path[keys[4]].write_bytes(a)


def test_embed_and_selections_from_a_damaged_cache_equal_a_clean_run(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    runner = CliRunner()
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": f"note {i} about {'rain' if i % 3 else 'markets'}, "
                                                           f"item {i * 31}"} for i in range(48)])
    target = write_jsonl(tmp_path / "target.jsonl", [{"text": "weather today"}, {"text": "stock prices"}])
    cache = tmp_path / "cache"

    def run(*args: object) -> None:
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output

    def selections() -> dict[str, list[int]]:
        out = {}
        for method in ("knn", "tsds"):
            run("select", "--pool", pool, "--target", target, "--method", method, "--budget", "8", "--cache-dir",
                cache, "--out", tmp_path / method)
            out[method] = json.loads((tmp_path / method / "manifest.json").read_text())["counts"], \
                [json.loads(line)["_id"] for line in (tmp_path / method / "selected.jsonl").read_text().splitlines()]
        return out

    run("embed", "--in", pool, "--cache-dir", cache, "--shard-size", "8", "--out", tmp_path / "clean.npy")
    (cache_dir,) = {p.parent for p in cache.glob("embeddings/*/*.done")}
    keys = [p.stem for p in sorted(cache_dir.glob("*.done"), key=lambda p: p.stat().st_mtime_ns)]
    assert len(keys) == 6
    damage_every_way(cache_dir, keys)
    caplog.clear()
    run("embed", "--in", pool, "--cache-dir", cache, "--shard-size", "8", "--out", tmp_path / "again.npy")
    np.testing.assert_allclose(np.load(tmp_path / "again.npy"), np.load(tmp_path / "clean.npy"), atol=1e-6, rtol=0)
    assert caplog.text.count("failed its check") == 4  # the truncated one fails the cheap check, silently

    # selections read the default shard size (one shard for the pool): damage it and compare with clean ones
    clean = selections()
    pool_shards = {p.stem for p in cache.glob("embeddings/*/*.done")} - set(keys)
    for key in pool_shards:
        shard = next(cache.glob(f"embeddings/*/{key}.npy"))
        overwrite_at = shard.stat().st_size - 400
        data = bytearray(shard.read_bytes())
        data[overwrite_at:overwrite_at + 400] = np.full(100, 12.0, dtype=np.float32).tobytes()
        shard.write_bytes(bytes(data))
    caplog.clear()
    assert selections() == clean
    assert caplog.text.count("failed its check") == 2  # found by the first run, recomputed, fine for the second


# -- a read-only cache -------------------------------------------------------------------------------------------

def _read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write of the feature cache fails as on a read-only file system."""
    def refuse(path: Path, *args: Any) -> Path:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr("tasksift.features.cache.atomic_write", refuse)
    monkeypatch.setattr("tasksift.features.cache.write_text_atomic", refuse)


def test_a_read_only_cold_cache_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _read_only(monkeypatch)
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": f"row {i}"} for i in range(5)])
    result = CliRunner().invoke(app, ["embed", "--in", str(pool), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tasksift: error: ") and "read-only" in lines[0], lines


@pytest.mark.parametrize("command", ["embed", "select"])
def test_a_read_only_warm_cache_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    cache = tmp_path / "cache"
    runner = CliRunner()
    base = {"pool": write_jsonl(tmp_path / "pool.jsonl", [{"text": f"row {i}"} for i in range(5)]),
            "target": write_jsonl(tmp_path / "target.jsonl", [{"text": "a row"}])}
    for path in (base["pool"], base["target"]):
        assert runner.invoke(app, ["embed", "--in", str(path), "--cache-dir", str(cache)]).exit_code == 0
    before = {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()}
    _read_only(monkeypatch)
    args = (["embed", "--in", str(base["pool"]), "--cache-dir", str(cache), "--out", str(tmp_path / "v.npy")]
            if command == "embed" else
            ["select", "--pool", str(base["pool"]), "--target", str(base["target"]), "--method", "knn", "--budget",
             "3", "--cache-dir", str(cache), "--out", str(tmp_path / "run")])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()} == before
    if command == "embed":
        assert "0 shards computed" in " ".join(result.stdout.split())
