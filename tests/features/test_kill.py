"""`tasksift embed` killed with SIGKILL mid-run loses at most the shard it was computing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasksift.features import Embedder, embed_texts
from tests.kill import OFFLINE, kill_after_shards

SHARD_SIZE = 16
TOPICS = ["markets", "football", "elections", "films", "phones", "weather", "schools", "hospitals"]


def pool_texts(n: int = 300) -> list[str]:
    """Distinct sentences of varied length (so no two shards share a key)."""
    return [
        f"Report {i}: news about {TOPICS[i % len(TOPICS)]} " + "and more detail " * (i % 5) + f"({i * 7919})."
        for i in range(n)
    ]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_run_resumes_without_recomputing(tmp_path: Path, embedder: Embedder) -> None:
    texts = pool_texts()
    total_shards = -(-len(texts) // SHARD_SIZE)
    cache_root = tmp_path / "cache"
    records = tmp_path / "pool.jsonl"
    records.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    args = ["embed", "--in", str(records), "--text-field", "text", "--cache-dir", str(cache_root),
            "--shard-size", str(SHARD_SIZE)]
    kill_after_shards(args, cache_root)

    (cache_dir,) = {p.parent for p in cache_root.glob("embeddings/*/*.done")}
    finished = {p.stem for p in cache_dir.glob("*.done")}
    assert 2 <= len(finished) < total_shards, "the child was not killed mid-run"
    before = {}
    for key in finished:
        for suffix in (".npy", ".done"):
            st = (cache_dir / f"{key}{suffix}").stat()
            before[key + suffix] = (st.st_ino, st.st_mtime_ns, st.st_size)

    vectors = tmp_path / "vectors.npy"
    rerun = subprocess.run([sys.executable, "-m", "tasksift", *args, "--out", str(vectors)],
                           env={**os.environ, **OFFLINE}, capture_output=True, text=True, check=True)
    assert f"{total_shards - len(finished)} shards computed, {len(finished)} reused" in " ".join(rerun.stdout.split())
    resumed = np.load(vectors)
    for name, stamp in before.items():
        st = (cache_dir / name).stat()
        assert (st.st_ino, st.st_mtime_ns, st.st_size) == stamp, f"{name} was rewritten"
    assert list(cache_dir.glob("*.tmp")) == []  # the killed child's temporary file was swept
    assert len(list(cache_dir.glob("*.done"))) == total_shards

    clean = embed_texts(texts, model=embedder, cache_dir=tmp_path / "clean", shard_size=SHARD_SIZE,
                        progress=False)
    assert clean.n_computed == total_shards
    np.testing.assert_allclose(resumed, clean.matrix(), atol=1e-6, rtol=0)
