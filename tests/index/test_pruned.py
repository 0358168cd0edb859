"""The pruned range search finds what the brute force finds: the same rows per query, in the same order, at the
same distances up to float32 rounding, whatever its bfloat16 screen rules out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasksift.index import pruned, searcher
from tasksift.index.exact import pool_range_search
from tasksift.index.pruned import PrunedRangeSearch, fast_bfloat16, screen_threshold
from tasksift.index.searcher import LocalSearch
from tasksift.selectors.tsds.density import brute_density, radius_density


def topics(seed: int, n: int, dim: int = 64, count: int = 30, spread: float = 0.35, copies: float = 0.05
           ) -> np.ndarray:
    """Rows around ``count`` random unit centres, a share ``copies`` of them near-copies of other rows."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(count, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, count, n)] + spread * rng.normal(size=(n, dim)) / np.sqrt(dim)
    copy = rng.choice(n, int(copies * n), replace=False)
    x[copy] = x[rng.integers(0, n, len(copy))] + 0.02 * rng.normal(size=(len(copy), dim)) / np.sqrt(dim)
    return x.astype(np.float32)


def assert_same_hits(found: tuple, brute: tuple, scale: float = 1.0) -> None:
    """Same rows; distances within float32 rounding of ``|y|^2 + |x|^2 - 2 y.x`` with squared norms ``scale``."""
    (lims, d2, rows), (lims_b, d2_b, rows_b) = found, brute
    assert np.array_equal(lims, lims_b)
    assert np.array_equal(rows, rows_b)  # same rows, each query's in increasing order
    np.testing.assert_allclose(d2, d2_b, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("settings", [{"screen": True}, {"screen": True, "cells": 1}, {"screen": True, "cells": 7},
                                      {"screen": False}])
def test_finds_what_the_brute_force_finds(settings: dict) -> None:
    x = topics(0, 5000)
    rng = np.random.default_rng(1)
    y = np.concatenate([x[rng.choice(len(x), 1100, replace=False)], topics(2, 40)])  # pool rows and others
    stats: dict[str, int] = {}
    search = PrunedRangeSearch(x, 0.3, stats, **settings)
    brute = pool_range_search(x, 0.3, {})
    for part in (y[:1030], y[1030:], y[:3]):  # more than one query block; the first call sets up, later reuse
        assert_same_hits(search(part), brute(part))
    assert stats["brute_force"] == (len(y) + 3) * len(x)
    if settings["screen"]:
        assert stats["screen"] == 1 and stats["screened"] == stats["brute_force"]
        assert stats["cells"] == settings.get("cells", int(np.sqrt(len(x))))
        assert stats["compared"] < 0.2 * stats["brute_force"]
    else:
        assert stats["screen"] == 0 and stats["compared"] == stats["brute_force"] and stats["screened"] == 0


def test_unions_taken_a_slice_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pruned, "UNION_SLICE", 7)
    x = topics(10, 3000)
    y = x[::5]
    assert_same_hits(PrunedRangeSearch(x, 0.3, {}, screen=True, cells=3)(y), pool_range_search(x, 0.3, {})(y))


def test_rows_at_the_radius_duplicates_and_exact_distances() -> None:
    """Integer rows, so every float32 distance is exact: rows at exactly the radius are not hits (faiss's
    ``d2 < r^2``), rows just inside are, duplicates are hits at distance 0."""
    rng = np.random.default_rng(3)
    base = rng.integers(-20, 20, size=(400, 40)).astype(np.float32)
    q = base[:5]
    steps = [np.eye(40)[i] * 3 for i in range(3)]  # distance 3: on the radius
    inside, on = np.zeros(40), np.zeros(40)
    inside[:2] = 2  # squared distance 8 < 9
    on[:3] = (2, 2, 1)  # squared distance 9
    extra = [q[i] + s for i in range(5) for s in [*steps, inside, on, np.zeros(40)]]
    x = np.concatenate([base, np.array(extra, dtype=np.float32)])
    found = PrunedRangeSearch(x, 3.0, {}, screen=True, cells=9)(q)
    assert_same_hits(found, pool_range_search(x, 3.0, {})(q))
    lims, d2, rows = found
    by_hand = ((q[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1)
    for i in range(len(q)):
        assert rows[lims[i]:lims[i + 1]].tolist() == np.flatnonzero(by_hand[i] < 9.0).tolist()
        assert d2[lims[i]:lims[i + 1]].tolist() == by_hand[i, rows[lims[i]:lims[i + 1]]].tolist()
        assert {0.0, 8.0} <= set(d2[lims[i]:lims[i + 1]].tolist())  # itself, its duplicate, the row inside


@pytest.mark.parametrize("offset", [0.0, 3.0])
def test_keeps_pairs_just_inside_the_radius_away_from_the_origin(offset: float) -> None:
    """Pairs at 0.99 of the radius in random directions, around the origin and around a point three times as far
    as the rows' spread (the screen centres the rows): the screen's error bound keeps every one."""
    rng = np.random.default_rng(4)
    dim, radius = 96, 0.5
    base = offset + rng.normal(size=(3000, dim))
    step = rng.normal(size=(3000, dim))
    step *= 0.99 * radius / np.linalg.norm(step, axis=1, keepdims=True)
    x = np.concatenate([base, base + step]).astype(np.float32)
    y = x[:1500]
    stats: dict[str, int] = {}
    found = PrunedRangeSearch(x, radius, stats, screen=True)(y)
    assert_same_hits(found, pool_range_search(x, radius, {})(y), scale=dim * (1 + offset**2))
    assert (np.diff(found[0]) >= 2).all()  # itself and its partner


def test_screen_threshold_is_the_radius_plus_rounding() -> None:
    assert 0.5625 < screen_threshold(0.5625, 384, 1.0, 1.0) < 0.5625 + 0.02
    assert screen_threshold(0.5625, 384, 1e4, 1.0) > screen_threshold(0.5625, 384, 1.0, 1.0)


def test_densities_equal_the_brute_force_ones() -> None:
    x = topics(5, 4000)
    rows = np.random.default_rng(5).choice(len(x), 500, replace=False)
    sigma = 0.3
    pruned = radius_density(PrunedRangeSearch(x, sigma, {}, screen=True), x, rows, sigma, chunk=200)
    assert (pruned > 1.5).sum() > 20  # rows with near-copies
    faiss_brute = radius_density(pool_range_search(x, sigma, {}), x, rows, sigma)
    numpy_brute = brute_density(x, rows, sigma)
    # float32 distances |y|^2 + |x|^2 - 2 y.x of near-copies lose digits to cancellation whatever the order of
    # their sums: the two brute forces differ from each other by as much
    np.testing.assert_allclose(pruned, numpy_brute, rtol=1e-4)
    np.testing.assert_allclose(pruned, faiss_brute, rtol=1e-4)


def test_no_queries() -> None:
    lims, d2, rows = PrunedRangeSearch(topics(8, 500), 0.5, stats := {})(np.zeros((0, 64), dtype=np.float32))
    assert lims.tolist() == [0] and len(d2) == len(rows) == 0 and stats == {}


def test_bfloat16_hardware_from_the_cpu_flags(tmp_path: Path) -> None:
    for name, text, fast in (("amx", "flags\t\t: fpu sse avx512f amx_bf16 amx_tile\n", True),
                             ("avx2", "flags\t\t: fpu sse avx2 fma\n", False),
                             ("arm", "Features\t: fp asimd bf16 i8mm\n", True)):
        (tmp_path / name).write_text(text)
        assert fast_bfloat16(str(tmp_path / name)) is fast
    assert fast_bfloat16(str(tmp_path / "missing")) is False


def test_local_search_prunes_whole_large_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    x = topics(9, 1000)
    assert not isinstance(LocalSearch().range_search(x, 0.5, {}), PrunedRangeSearch)  # small pool
    monkeypatch.setattr(searcher, "PRUNE_MIN_ROWS", 1000)
    assert isinstance(LocalSearch().range_search(x, 0.5, {}), PrunedRangeSearch)
    assert not isinstance(LocalSearch(prune=False).range_search(x, 0.5, {}), PrunedRangeSearch)
    assert not isinstance(LocalSearch().range_search(x, 0.5, {}, among=np.arange(10)), PrunedRangeSearch)


@pytest.mark.parametrize("screen", [True, False])
def test_kernel_sums_equal_those_of_the_hits_bit_for_bit(screen: bool, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from tasksift.index.exact import kernel_sums

    monkeypatch.setattr(pruned, "UNION_SLICE", 64)  # several slices of each union
    monkeypatch.setattr(pruned, "FUSED_ROWS", 700)  # the mapped pool read in five slices
    x = topics(8, 3000)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    rows = np.random.default_rng(8).choice(len(x), 400, replace=False)
    sigma = 0.3
    for pool in (x, mapped):
        search = PrunedRangeSearch(pool, sigma, {}, screen=screen, cells=11)
        lims, d2, ids = search(x[rows])
        pos = np.repeat(np.arange(len(rows)), np.diff(lims))
        expected = kernel_sums(pos, d2, ids, rows, sigma, len(rows))
        got = search.kernel_sums(x[rows], rows)
        assert np.array_equal(got, expected)
        assert (got > 0.5).sum() > 20  # rows with near-copies: the sums are not all zero
        own = ids == rows[pos]
        assert own.sum() == len(rows)  # every query finds itself, and its own row is left out of the sum
    # the density by sums equals the density from the same search's hits (a plain function hides kernel_sums)
    assert np.array_equal(radius_density(search, mapped, rows, sigma, chunk=150),
                          radius_density(lambda y: search(y), mapped, rows, sigma, chunk=150))


def test_a_mapped_pool_is_read_once_per_call_in_row_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a pool larger than memory: each row read once per search, slice after slice, never gathered out of order
    monkeypatch.setattr(pruned, "FUSED_ROWS", 512)
    x = topics(12, 3000)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    rows = np.random.default_rng(12).choice(len(x), 300, replace=False)
    search = PrunedRangeSearch(mapped, 0.3, {}, screen=True, cells=11)
    want = PrunedRangeSearch(x, 0.3, {}, screen=True, cells=11).kernel_sums(x[rows], rows)
    search.kernel_sums(x[rows], rows)  # the first call also reads the pool for its mean and norms
    reads: list[object] = []
    real = pruned.float32_rows
    monkeypatch.setattr(pruned, "float32_rows", lambda pool, which=None: reads.append(which) or real(pool, which))
    got = search.kernel_sums(x[rows], rows)
    assert all(isinstance(which, slice) for which in reads)
    assert sorted((which.start, which.stop) for which in reads) == [(lo, lo + 512) for lo in range(0, 3000, 512)]
    assert np.array_equal(got, want)  # the sums of the in-memory search, to the bit
    assert search.stats["compared"] < 0.5 * search.stats["brute_force"]  # the screen ruled most pairs out
