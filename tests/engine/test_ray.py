"""The Ray engine on a local cluster (2 CPUs) started once for this module: sharded search equals one index,
selections equal the local engine's, embeddings land in the same cache, a killed run resumes."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import tasksift  # noqa: E402
from tasksift.engine.ray_engine import RayEngine  # noqa: E402
from tasksift.features import embed_texts  # noqa: E402
from tasksift.index import build_index  # noqa: E402
from tasksift.selectors.tsds.selector import pool_range_search  # noqa: E402
from tests.kill import kill_after_shards  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SHARD_SIZE = 16
TOPICS = ["markets", "football", "elections", "films", "phones", "weather", "schools", "hospitals"]


@pytest.fixture(scope="module")
def cluster() -> str:
    """A local Ray cluster for this module; yields its address."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def engine(cluster: str) -> RayEngine:
    return RayEngine(workers=2)  # uses the cluster the fixture connected to


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


def pool_texts(n: int) -> list[str]:
    """Distinct sentences of varied length (so no two shards share a key)."""
    return [f"Report {i}: news about {TOPICS[i % len(TOPICS)]} " + "and more detail " * (i % 5) + f"({i * 7919})."
            for i in range(n)]


def test_select_from_records_on_ray_equals_local_and_shares_the_cache(engine: RayEngine, tmp_path: Path) -> None:
    pool = [{"text": t} for t in pool_texts(60)]
    target = [{"text": "news about football and elections"}, {"text": "a report on hospitals"}]
    ray_cache, local_cache = tmp_path / "ray-cache", tmp_path / "local-cache"
    on_ray = tasksift.select(pool, target, method="knn", budget=10, engine=engine, cache_dir=ray_cache)
    local = tasksift.select(pool, target, method="knn", budget=10, cache_dir=local_cache)
    assert on_ray.ids == local.ids
    np.testing.assert_allclose(on_ray.scores, local.scores, atol=1e-6)
    info = on_ray.manifest["features"]["pool"]
    assert info["shards"]["computed"] == 1 and info["cache_dir"].startswith(str(ray_cache))
    # the cache the Ray run wrote is the local layout: a local run over it computes nothing
    again = embed_texts([r["text"] for r in pool], cache_dir=ray_cache, progress=False)
    assert again.n_computed == 0
    clean = embed_texts([r["text"] for r in pool], cache_dir=local_cache, progress=False)
    np.testing.assert_allclose(again.matrix(), clean.matrix(), atol=1e-6)


def test_gradients_on_ray_equal_local(engine: RayEngine, tmp_path: Path) -> None:
    """Gradient features with a warm-up and Adam preconditioning: each worker loads the proxy, reads the warm-up
    from the cache (or runs the same seeded one) and writes nothing; the driver stores the same rows."""
    from tasksift.features.gradients import WarmupSettings, gradient_features
    from tests.train.helpers import tiny_llama

    model = tiny_llama(tmp_path / "tiny")
    words = ["apple red", "lime green", "plum blue", "cow moo", "dog woof", "cat meow", "sheep baa", "banana"]
    texts = [f"What colour is the fruit ? {words[i % 8]}" + " ." * (i % 3) for i in range(18)]
    settings = {"model": model, "proj_dim": 16, "shard_size": 5, "precondition": "adam", "progress": False,
                "warmup": WarmupSettings(steps=2, lr=1e-3, batch_size=4, sample=8, seed=0)}
    on_ray = gradient_features(texts, cache_dir=tmp_path / "ray", engine=engine, **settings)
    local = gradient_features(texts, cache_dir=tmp_path / "local", **settings)
    assert on_ray.n_computed == local.n_computed == 4
    assert on_ray.settings == local.settings
    np.testing.assert_allclose(on_ray.matrix(), local.matrix(), atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("resume_on", ["ray", "local"])
def test_killed_ray_embedding_resumes_without_recomputing(engine: RayEngine, cluster: str, tmp_path: Path,
                                                          resume_on: str) -> None:
    texts = pool_texts(300)
    total = -(-len(texts) // SHARD_SIZE)
    cache_root = tmp_path / "cache"
    records = tmp_path / "pool.jsonl"
    records.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    kill_after_shards(["embed", "--in", str(records), "--cache-dir", str(cache_root), "--shard-size",
                       str(SHARD_SIZE), "--engine", "ray", "--address", cluster, "--workers", "2"], cache_root,
                      timeout=240)

    (cache_dir,) = {p.parent for p in cache_root.glob("embeddings/*/*.done")}
    finished = {p.stem for p in cache_dir.glob("*.done")}
    assert 2 <= len(finished) < total, "the run was not killed mid-way"
    stamps = {name: (st.st_ino, st.st_mtime_ns, st.st_size)
              for key in finished for name in (f"{key}.npy", f"{key}.done")
              for st in [(cache_dir / name).stat()]}

    resumed = embed_texts(texts, cache_dir=cache_root, shard_size=SHARD_SIZE, progress=False,
                          engine=engine if resume_on == "ray" else None)
    # only the shards without a marker are computed: those in flight at the kill and those not started
    assert resumed.n_computed == total - len(finished) and resumed.n_reused == len(finished)
    for name, stamp in stamps.items():
        st = (cache_dir / name).stat()
        assert (st.st_ino, st.st_mtime_ns, st.st_size) == stamp, f"{name} was rewritten"
    assert len(list(cache_dir.glob("*.done"))) == total

    clean = embed_texts(texts, cache_dir=tmp_path / "clean", shard_size=SHARD_SIZE, progress=False)
    np.testing.assert_allclose(resumed.matrix(), clean.matrix(), atol=1e-6, rtol=0)
