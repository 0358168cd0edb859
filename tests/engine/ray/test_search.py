"""The Ray engine's search on a local cluster: sharded search equals one index, the range search equals the
one in process, selections equal the local engine's."""

from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import tasksift  # noqa: E402
from tasksift.engine.ray import RayEngine, RaySearch  # noqa: E402
from tasksift.index import build_index  # noqa: E402
from tasksift.index.exact import pool_range_search  # noqa: E402
from tasksift.index.searcher import LocalSearch  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def tied() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, size=(3001, 8)).astype(np.float32)
    x[x.sum(axis=1) == 0, 0] = 1
    x[1495:1505] = x[7]  # duplicates across the shard edge
    q = rng.integers(-2, 3, size=(25, 8)).astype(np.float32)
    q[q.sum(axis=1) == 0, 0] = 1
    return x, q


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_sharded_search_on_ray_equals_one_index(engine: RayEngine, tied, metric: str) -> None:
    x, q = tied
    search = engine.search()
    try:
        index = search.build(x, metric=metric, kind="flat")
        values, rows = index.search(q, 30)
        one_values, one_rows = build_index(x, metric=metric, kind="flat").search(q, 30)
        assert rows.tolist() == one_rows.tolist()
        np.testing.assert_array_equal(values, one_values)
        info = index.info()
        assert info["shards"] == 2 and info["exact"] and info["engine"] == "ray"
        if metric == "l2":
            in_place = search.exact(x).search(q, 30)
            assert in_place[1].tolist() == one_rows.tolist()
            np.testing.assert_array_equal(in_place[0], one_values)
    finally:
        search.close()


def test_range_search_on_ray_equals_in_process(engine: RayEngine, tied) -> None:
    x, _ = tied
    y = x[::97]
    search = engine.search()
    try:
        mine = search.range_search(x, 2.5, stats := {})(y)
    finally:
        search.close()
    theirs = pool_range_search(x, 2.5, {})(y)
    for a, b in zip(mine, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert stats["compared"] == len(y) * len(x)


def test_ray_search_has_the_signatures_of_the_local_search() -> None:
    import inspect

    for name in ("build", "exact", "range_search", "info", "close"):
        ours, local = inspect.signature(getattr(RaySearch, name)), inspect.signature(getattr(LocalSearch, name))
        assert list(ours.parameters) == list(local.parameters), name
        assert [p.kind for p in ours.parameters.values()] == [p.kind for p in local.parameters.values()], name
        assert [p.default for p in ours.parameters.values()] == [p.default for p in local.parameters.values()], name


def test_ray_search_builds_with_build_index_settings(engine: RayEngine, tied) -> None:
    x, q = tied
    search = engine.search()
    try:
        index = search.build(x, kind="auto", flat_max_rows=1000, nlist=8, nprobe=8, seed=1)
        info = index.info()
        assert info["kind"] == "ivf" and info["nlist"] == 8 and not info["exact"]
        assert index.search(q, 5)[1].shape == (len(q), 5)
        with pytest.raises(TypeError):
            search.build(x, kind="flat", no_such_setting=1)
    finally:
        search.close()


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(12, 16))
    x = (centres[rng.integers(0, 12, 4000)] + 0.4 * rng.normal(size=(4000, 16))).astype(np.float32)
    x[2000:2003] = x[5]  # exact duplicates
    q = (centres[:3].repeat(4, axis=0) + 0.4 * rng.normal(size=(12, 16))).astype(np.float32)
    return x, q


@pytest.mark.parametrize(("method", "params"), [
    ("knn", {}), ("knn", {"metric": "l2"}), ("tsds", {}), ("tsds", {"metric": "cosine", "sigma": 0.3}),
    ("random", {}),
])
def test_selection_on_ray_equals_local(engine: RayEngine, vectors, method: str, params: dict) -> None:
    x, q = vectors
    local = tasksift.select(pool_vectors=x, target_vectors=q, method=method, budget=150, seed=7, **params)
    on_ray = tasksift.select(pool_vectors=x, target_vectors=q, method=method, budget=150, seed=7, engine=engine,
                             **params)
    assert on_ray.indices.tolist() == local.indices.tolist()
    np.testing.assert_array_equal(on_ray.weights, local.weights)
    np.testing.assert_array_equal(on_ray.scores, local.scores)
    assert on_ray.reasons == local.reasons
    assert on_ray.manifest["engine"] == "ray" and on_ray.manifest["engine_info"]["workers"] == 2
    if method != "random":  # the neighbour search ran on the shards
        assert on_ray.manifest["index"]["engine"] == "ray"
        assert on_ray.manifest["index"]["shards"] == 2
    if method == "tsds":  # its exact densities too: range searches on the shards after the prefetch
        assert on_ray.manifest["index"]["search"]["calls"] > 1
        assert on_ray.manifest["density"]["compared_distances"] == local.manifest["density"]["compared_distances"]
