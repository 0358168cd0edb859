"""A streamed text column in the feature cache: read shard by shard, the same shards, the same embeddings bit for
bit as the plain list, and one cache for both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tasksift.cli.app import app
from tasksift.features import Embedder, embed_texts
from tasksift.records import load_records
from tasksift.records.column import STREAM_ENV, TextColumn
from tests.conftest import write_jsonl
from tests.features.test_cache import FakeFn, expected, make_cache, texts_of

POOL = [{"text": f"note {i} about {'rain and wind' if i % 3 else 'markets'} — item {i * 31}" + " more" * (i % 5),
         "id": f"n{i}"} for i in range(37)]


class SpyRows:
    """Rows of a list of texts, recording every range asked for."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.calls: list[tuple[int, int]] = []

    def __call__(self, start: int, stop: int) -> list[dict[str, Any]]:
        self.calls.append((start, stop))
        return [{"text": t} for t in self.texts[start:stop]]


def column(texts: list[str]) -> tuple[TextColumn, SpyRows]:
    rows = SpyRows(texts)
    return TextColumn(len(texts), rows, lambda rec, row: rec["text"]), rows


def test_the_cache_reads_a_column_one_shard_at_a_time(tmp_path: Path) -> None:
    texts = texts_of(11)
    col, rows = column(texts)
    cache = make_cache(tmp_path)  # shards of 4
    assert cache.plan(col) == make_cache(tmp_path).plan(texts)
    assert rows.calls == [(0, 4), (4, 8), (8, 11)]
    fn = FakeFn()
    result = cache.compute(col, fn, progress=False)
    assert fn.calls == [texts[0:4], texts[4:8], texts[8:11]]
    np.testing.assert_array_equal(result.matrix(), expected(texts))
    assert rows.calls == [(0, 4), (4, 8), (8, 11)] * 2  # planned once, each missing shard read once more

    # an engine that plans, then collects: the column is read once, and each read is one shard
    rows.calls.clear()
    other = make_cache(tmp_path)
    assert other.unfinished(col) == []
    assert other.collect(col, n_computed=0, rows_computed=0, compute_seconds=0.0, seconds=0.0).shard_keys == \
        result.shard_keys
    assert rows.calls == [(0, 4), (4, 8), (8, 11)]


def test_streamed_embeddings_equal_the_list_bit_for_bit_and_share_one_cache(tmp_path: Path,
                                                                             embedder: Embedder) -> None:
    path = write_jsonl(tmp_path / "pool.jsonl", POOL)
    plain, streamed = load_records(path), load_records(path, stream=True)
    assert streamed.streamed and not plain.streamed
    a = embed_texts(plain.texts, model=embedder, cache_dir=tmp_path / "a", shard_size=8, progress=False)
    b = embed_texts(streamed.texts, model=embedder, cache_dir=tmp_path / "b", shard_size=8, progress=False)
    assert (a.n_computed, b.n_computed) == (5, 5)
    assert a.shard_keys == b.shard_keys
    x = a.matrix()
    assert x.shape == (37, 384) and x.tobytes() == b.matrix().tobytes()
    for texts, cache in ((streamed.texts, "a"), (plain.texts, "b")):  # each cache serves the other
        fresh = Embedder()
        again = embed_texts(texts, model=fresh, cache_dir=tmp_path / cache, shard_size=8, progress=False)
        assert (again.n_computed, again.n_reused) == (0, 5) and not fresh.is_loaded
        assert again.matrix().tobytes() == x.tobytes()


def run(*args: object) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_embed_and_select_on_a_streamed_pool_write_what_a_plain_one_does(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pool = write_jsonl(tmp_path / "pool.jsonl", POOL)
    target = write_jsonl(tmp_path / "target.jsonl", [{"text": "rain tomorrow"}, {"text": "wind warning"}])
    cache = tmp_path / "cache"
    run("embed", "--in", pool, "--cache-dir", cache, "--shard-size", "8", "--out", tmp_path / "plain.npy")
    run("select", "--pool", pool, "--target", target, "--method", "knn", "--budget", "6", "--cache-dir", cache,
        "--out", tmp_path / "plain")
    monkeypatch.setenv(STREAM_ENV, "0")  # every input is streamed from here on
    assert load_records(pool).streamed
    out = run("embed", "--in", pool, "--cache-dir", cache, "--shard-size", "8", "--out", tmp_path / "streamed.npy")
    assert "0 shards computed, 5 reused" in out
    plain_bytes = (tmp_path / "plain.npy").read_bytes()
    assert (tmp_path / "streamed.npy").read_bytes() == plain_bytes
    matrix = np.load(tmp_path / "plain.npy")
    np.save(tmp_path / "saved.npy", matrix)  # the file written shard by shard is the one numpy.save writes
    assert (tmp_path / "saved.npy").read_bytes() == plain_bytes
    run("select", "--pool", pool, "--target", target, "--method", "knn", "--budget", "6", "--cache-dir", cache,
        "--out", tmp_path / "streamed")
    selected = [(tmp_path / name / "selected.jsonl").read_text() for name in ("plain", "streamed")]
    assert selected[0] == selected[1]
    rows = [json.loads(line) for line in selected[0].splitlines()]
    assert len(rows) == 6 and all(r["text"] == POOL[int(r["id"][1:])]["text"] for r in rows)
