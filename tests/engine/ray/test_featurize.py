"""The Ray engine's featurization on a local cluster: embeddings land in the same cache as the local engine's,
gradients equal the local ones, a killed run resumes."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import tasksift  # noqa: E402
from tasksift.engine.ray import RayEngine  # noqa: E402
from tasksift.features import embed_texts  # noqa: E402
from tests.kill import kill_after_shards  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SHARD_SIZE = 16
TOPICS = ["markets", "football", "elections", "films", "phones", "weather", "schools", "hospitals"]


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
