"""Block-wise exact search over a memory-mapped or float16 pool gives the answers of the search over the whole
matrix in memory, to the bit: top-k (l2, ip, cosine; ties ordered by row), range search, the pruned range search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasksift.index import build_index, pruned
from tasksift.index.blocks import BlockIndex, block_rows, blocks, is_mapped, out_of_core, pool_rows
from tasksift.index.exact import InPlaceSearch, pool_range_search, range_search_blocks, range_search_l2
from tasksift.index.pruned import PrunedRangeSearch
from tasksift.index.searcher import LocalSearch
from tasksift.util.spill import scratch


def pool_with_ties(seed: int, n: int = 300, dim: int = 16) -> np.ndarray:
    """Rows on a coarse grid (many exactly tied distances), a tenth of them exact copies of others."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=(n, dim)).astype(np.float32) / 2
    copies = rng.choice(n, n // 10, replace=False)
    x[copies] = x[rng.integers(0, n, len(copies))]
    return x


def mapped(tmp_path: Path, x: np.ndarray, name: str = "pool.npy") -> np.ndarray:
    np.save(tmp_path / name, x)
    return np.load(tmp_path / name, mmap_mode="r")


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("rows", [1, 7, 64, 1000])
def test_block_search_equals_a_flat_index_over_the_whole_pool(tmp_path: Path, metric: str, rows: int) -> None:
    x = pool_with_ties(0)
    q = pool_with_ties(1, n=40)
    flat = build_index(x, metric=metric, kind="flat")
    index = BlockIndex(mapped(tmp_path, x), metric=metric, rows=rows)
    for k in (1, 5, 37, 300):
        values, found = index.search(q, k)
        want_values, want_rows = flat.search(q, k)
        assert np.array_equal(found, want_rows)
        assert np.array_equal(values, want_values)
    assert index.info()["memory_mapped"] and index.info()["block_rows"] == rows and index.passes >= 4


def test_in_place_search_reads_a_memory_map_block_by_block_with_the_same_answers(tmp_path: Path) -> None:
    x = pool_with_ties(2, n=500)
    q = pool_with_ties(3, n=200)  # 200 queries x 16 dims: faiss's own kernel choice is kept per block
    in_memory, on_disk = InPlaceSearch(x), InPlaceSearch(mapped(tmp_path, x))
    assert in_memory.blocks is None and on_disk.blocks is not None
    on_disk.blocks.block_rows = 33
    for k in (1, 10, 499):
        assert all(np.array_equal(a, b) for a, b in zip(on_disk.search(q, k), in_memory.search(q, k), strict=True))
    assert on_disk.info()["in_place"] and on_disk.info()["memory_mapped"]


def test_a_float16_pool_searches_as_its_float32_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    x16 = rng.normal(size=(400, 24)).astype(np.float16)
    q = rng.normal(size=(30, 24)).astype(np.float32)
    want = build_index(x16.astype(np.float32), kind="flat").search(q, 12)
    for pool in (x16, mapped(tmp_path, x16)):
        index = LocalSearch().build(pool, metric="l2", kind="auto")
        assert isinstance(index, BlockIndex) and index.info()["pool_dtype"] == "float16"
        assert all(np.array_equal(a, b) for a, b in zip(index.search(q, 12), want, strict=True))


def test_local_search_keeps_faiss_indexes_for_pools_in_memory_and_named_kinds(tmp_path: Path) -> None:
    x = pool_with_ties(5)
    search = LocalSearch()
    assert search.build(x, kind="flat").info()["kind"] == "flat" and not isinstance(search.build(x), BlockIndex)
    assert isinstance(search.build(mapped(tmp_path, x), kind="flat"), BlockIndex)
    assert search.build(mapped(tmp_path, x), kind="hnsw").info()["kind"] == "hnsw"


@pytest.mark.parametrize("rows", [1, 13, 300])
def test_range_search_block_by_block_equals_the_search_over_the_whole_pool(tmp_path: Path, rows: int) -> None:
    x = pool_with_ties(6)
    y = pool_with_ties(7, n=50)
    for radius2 in (0.0, 4.0, 12.5):
        want = range_search_l2(y, x, radius2)
        found = range_search_blocks(y, mapped(tmp_path, x), radius2, rows)
        assert all(np.array_equal(a, b) for a, b in zip(found, want, strict=True))


def test_pool_range_search_over_a_memory_map_counts_and_finds_the_same(tmp_path: Path) -> None:
    x = pool_with_ties(8)
    stats_memory: dict[str, int] = {}
    stats_mapped: dict[str, int] = {}
    y = x[:25]
    want = pool_range_search(x, 2.5, stats_memory)(y)
    found = pool_range_search(mapped(tmp_path, x), 2.5, stats_mapped)(y)
    assert all(np.array_equal(a, b) for a, b in zip(found, want, strict=True))
    assert stats_mapped == stats_memory == {"compared": 25 * 300}


@pytest.mark.parametrize(("screen", "fused_rows"), [(True, 10**6), (True, 2048), (True, 300), (False, 10**6)])
def test_pruned_search_over_a_memory_map_finds_what_it_finds_in_memory(tmp_path: Path, screen: bool,
                                                                       fused_rows: int,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pruned, "FUSED_ROWS", fused_rows)  # the pool read at once, in two slices, in ten
    rng = np.random.default_rng(9)
    x = (rng.normal(size=(3000, 32)) / np.sqrt(32)).astype(np.float32)
    x[::7] = x[1::7][: len(x[::7])] + 0.01
    y = x[rng.choice(len(x), 200, replace=False)]
    in_memory = PrunedRangeSearch(x, 0.9, {}, screen=screen)(y)
    pool = mapped(tmp_path, x)
    search = PrunedRangeSearch(pool, 0.9, {}, screen=screen)
    found = search(y)
    assert all(np.array_equal(a, b) for a, b in zip(found, in_memory, strict=True))
    if screen:  # no bfloat16 copy of a mapped pool: each tile is rounded when it is screened
        assert search.tiles is None and search.tile_count == 2


def test_pruned_search_over_float16_rows_finds_the_hits_of_their_float32_values() -> None:
    rng = np.random.default_rng(10)
    x16 = (rng.normal(size=(2000, 32)) / np.sqrt(32)).astype(np.float16)
    y = x16[:150].astype(np.float32)
    for screen in (True, False):
        want = PrunedRangeSearch(x16.astype(np.float32), 0.8, {}, screen=screen)(y)
        found = PrunedRangeSearch(x16, 0.8, {}, screen=screen)(y)
        assert all(np.array_equal(a, b) for a, b in zip(found, want, strict=True))


def test_blocks_scratch_and_kinds_of_pools(tmp_path: Path) -> None:
    x = pool_with_ties(11, n=10, dim=3)
    assert [lo for lo, _ in blocks(x, 4)] == [0, 4, 8]
    assert np.array_equal(np.concatenate([b for _, b in blocks(x.astype(np.float16), 3)]),
                          x.astype(np.float16).astype(np.float32))
    assert block_rows(384) % 1024 == 0 and block_rows(10**9) == 1024
    on_disk = mapped(tmp_path, x)
    assert is_mapped(on_disk) and is_mapped(np.asarray(on_disk)[2:]) and not is_mapped(x)
    assert out_of_core(on_disk) and out_of_core(x.astype(np.float16)) and not out_of_core(x)
    assert np.shares_memory(pool_rows(on_disk), on_disk) and is_mapped(pool_rows(on_disk))
    assert pool_rows(x.astype(np.float64)).dtype == np.float32
    s = scratch((5, 3), np.float32)
    s[:] = 2.0
    assert is_mapped(s) and float(s.sum()) == 30.0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 120), m=st.integers(1, 30), k=st.integers(1, 130),
       rows=st.integers(1, 50), metric=st.sampled_from(["l2", "ip", "cosine"]))
def test_block_search_is_the_flat_search_on_any_pool(seed: int, n: int, m: int, k: int, rows: int,
                                                     metric: str) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(n, 6)).astype(np.float16)  # small integers: many ties, exact in float16
    q = rng.integers(-2, 3, size=(m, 6)).astype(np.float32)
    want = build_index(x.astype(np.float32), metric=metric, kind="flat").search(q, k)
    found = BlockIndex(x, metric=metric, rows=rows).search(q, k)
    assert all(np.array_equal(a, b) for a, b in zip(found, want, strict=True))
