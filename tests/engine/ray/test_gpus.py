"""One Ray worker per GPU, on the package's local cluster whose 2 GPUs are declared resources only: the
workers run a CPU feature function, and each records the device it was asked to build on and the GPU Ray gave
it. Also: the driver reads only the texts of the shards in flight, and what the features' factories ask for."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from tasksift.engine.ray import RayEngine  # noqa: E402
from tasksift.engine.ray.featurize import IN_FLIGHT  # noqa: E402
from tasksift.features.cache import FeatureCache  # noqa: E402
from tasksift.features.embed import EmbedderFactory, embed_texts  # noqa: E402
from tasksift.features.jobs import FeatureJob  # noqa: E402
from tasksift.util.errors import InputError  # noqa: E402

pytestmark = [pytest.mark.ray]

SHARD = 4
DIM = 8


def texts_of(n: int) -> list[str]:
    return [f"text number {i} " + "x" * (i % 7) for i in range(n)]


def digest_rows(texts: Sequence[str]) -> np.ndarray:
    """A feature function that gives the same float32 rows anywhere: bytes of each text's sha256."""
    rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:DIM], dtype=np.uint8) for t in texts]
    return (np.stack(rows).astype(np.float32) / 255.0).reshape(len(texts), DIM)


@dataclasses.dataclass(frozen=True)
class DigestFactory:
    """Builds :func:`digest_rows` on a worker, and writes to ``log_dir`` what the worker was given (device,
    Ray's GPU ids, ``CUDA_VISIBLE_DEVICES``) and the first text of every shard it computes."""

    log_dir: str
    device: str = "cpu"

    def __call__(self, threads: int, device: str | None = None) -> Callable[[list[str]], np.ndarray]:
        import ray

        pid = os.getpid()
        seen = {"pid": pid, "threads": threads, "device": device, "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
        Path(self.log_dir, f"built-{pid}.json").write_text(json.dumps(seen), encoding="utf-8")

        def fn(texts: list[str]) -> np.ndarray:
            with open(Path(self.log_dir, f"calls-{pid}.txt"), "a", encoding="utf-8") as f:
                f.write(texts[0] + "\n")
            return digest_rows(texts)

        return fn


def job_for(texts: Sequence[str], cache: FeatureCache, factory: Any) -> FeatureJob:
    def compute(chunk: list[str], advance: Callable[[int], None]) -> np.ndarray:
        advance(len(chunk))
        return digest_rows(chunk)

    return FeatureJob(cache, texts, compute, factory, "digests", None, False)


def new_cache(root: Path) -> FeatureCache:
    return FeatureCache(root, "digests", {"fn": "sha256-bytes", "shard_size": SHARD})


def logs(log_dir: Path) -> tuple[list[dict[str, Any]], dict[int, list[str]]]:
    built = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(log_dir.glob("built-*.json"))]
    calls = {int(p.stem.split("-")[1]): p.read_text(encoding="utf-8").splitlines()
             for p in sorted(log_dir.glob("calls-*.txt"))}
    return built, calls


@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_one_worker_per_gpu_each_shard_once_equal_to_local(engine: RayEngine, tmp_path: Path, device: str) -> None:
    texts = texts_of(42)  # 11 shards, the last one short
    cache_dir, log_dir = tmp_path / "cache", tmp_path / "log"
    log_dir.mkdir()
    local = job_for(texts, new_cache(tmp_path / "local"), None).run_here()
    # the first three shards are finished already (locally): the GPU workers compute only the others
    job_for(texts[: 3 * SHARD], new_cache(cache_dir), None).run_here()

    on_gpus = engine.featurize(job_for(texts, new_cache(cache_dir), DigestFactory(str(log_dir), device)))

    assert on_gpus.n_computed == 8 and on_gpus.n_reused == 3 and on_gpus.rows_computed == 42 - 12
    np.testing.assert_array_equal(on_gpus.matrix(), local.matrix())  # bit for bit
    assert len(list(Path(on_gpus.cache_dir).glob("*.done"))) == 11
    built, calls = logs(log_dir)
    # exactly one actor per GPU, each on its own GPU, built on "cuda" (that GPU, inside the actor)
    assert len(built) == 2 and all(b["device"] == "cuda" for b in built)
    assert sorted(b["gpu_ids"][0] for b in built) == ["0", "1"] and all(len(b["gpu_ids"]) == 1 for b in built)
    assert all(b["visible"] == b["gpu_ids"][0] for b in built)
    # every unfinished shard computed once, none of the finished ones
    firsts = sorted(first for shard_firsts in calls.values() for first in shard_firsts)
    assert firsts == sorted(texts[start] for start in range(12, 42, SHARD))
    run = engine.runs[-1]
    assert run["device"] == "cuda" and run["workers"] == 2
    assert sorted(w["gpu_ids"] for w in run["started"]) == [["0"], ["1"]]
    assert sum(w["shards"] for w in run["started"]) == 8
    assert engine.info()["featurized"][-1] == {"desc": "digests", "device": "cuda", "workers": 2,
                                               "gpu_ids": [w["gpu_ids"] for w in run["started"]]}


def test_workers_cap_the_gpu_workers_and_the_cpu_path_takes_no_gpu(cluster: str, tmp_path: Path) -> None:
    texts = texts_of(20)
    one = RayEngine(workers=1)  # the cluster the fixture connected to
    log_dir = tmp_path / "log-gpu"
    log_dir.mkdir()
    out = one.featurize(job_for(texts, new_cache(tmp_path / "a"), DigestFactory(str(log_dir), "cuda")))
    built, calls = logs(log_dir)
    assert out.n_computed == 5 and len(built) == 1 and len(calls[built[0]["pid"]]) == 5
    assert one.runs[-1]["device"] == "cuda" and one.runs[-1]["workers"] == 1

    two = RayEngine(workers=2)
    log_dir = tmp_path / "log-cpu"
    log_dir.mkdir()
    out = two.featurize(job_for(texts, new_cache(tmp_path / "b"), DigestFactory(str(log_dir), "cpu")))
    built, _ = logs(log_dir)
    assert out.n_computed == 5 and len(built) == 2
    assert all(b["device"] == "cpu" and b["gpu_ids"] == [] for b in built)
    np.testing.assert_array_equal(out.matrix(), digest_rows(texts))


def test_cuda_on_a_cluster_without_gpus_is_refused_before_any_work(engine: RayEngine, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = ray.nodes()
    for node in nodes:
        node["Resources"] = {k: v for k, v in node["Resources"].items() if k != "GPU"}
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    root = tmp_path / "cache"
    with pytest.raises(InputError) as err:
        engine.featurize(job_for(texts_of(8), new_cache(root), DigestFactory(str(tmp_path), "cuda")))
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("--device cuda with the Ray engine, but the cluster Ray is connected to has "
                                     "no GPUs")
    assert not root.exists()  # nothing prepared, nothing computed
    # auto falls back to the CPUs
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    out = engine.featurize(job_for(texts_of(8), new_cache(root), DigestFactory(str(log_dir), "auto")))
    built, _ = logs(log_dir)
    assert out.n_computed == 2 and engine.runs[-1]["device"] == "cpu"
    assert all(b["device"] == "cpu" for b in built)


class ReadLog(Sequence[str]):
    """Texts that record which rows are read, and when (between the stores the cache logs), while on."""

    def __init__(self, texts: list[str], events: list[tuple[str, int, int]]) -> None:
        self.texts, self.events, self.on = texts, events, False

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, item: Any) -> Any:
        if self.on:
            start, stop = (item.start, item.stop) if isinstance(item, slice) else (item, item + 1)
            self.events.append(("read", start, stop))
        return self.texts[item]


class StoreLog(FeatureCache):
    """A feature cache that logs every shard stored, and turns the texts' log on between planning and
    collecting (so only the engine's own reads are logged)."""

    def bind(self, texts: ReadLog) -> StoreLog:
        self.texts = texts
        return self

    def unfinished(self, texts: Sequence[str]) -> list[tuple[int, int, str]]:
        out = super().unfinished(texts)
        self.texts.on = True
        return out

    def store(self, key: str, out: Any, *, start: int, stop: int, seconds: float, dim: int | None = None) -> int:
        self.texts.events.append(("store", start, stop))
        return super().store(key, out, start=start, stop=stop, seconds=seconds, dim=dim)

    def collect(self, texts: Sequence[str], **kwargs: Any) -> Any:
        self.texts.on = False
        return super().collect(texts, **kwargs)


def test_the_driver_reads_only_the_texts_of_shards_in_flight(engine: RayEngine, tmp_path: Path) -> None:
    events: list[tuple[str, int, int]] = []
    texts = ReadLog(texts_of(80), events)  # 20 shards, 2 workers
    cache = StoreLog(tmp_path / "cache", "digests", {"fn": "sha256-bytes", "shard_size": SHARD}).bind(texts)
    out = engine.featurize(job_for(texts, cache, DigestFactory(str(tmp_path), "cpu")))
    assert out.n_computed == 20
    reads = [(start, stop) for kind, start, stop in events if kind == "read"]
    # each shard's texts read once, as one slice
    assert sorted(reads) == [(s, min(s + SHARD, 80)) for s in range(0, 80, SHARD)]
    outstanding = most = 0
    for kind, _, _ in events:
        outstanding += 1 if kind == "read" else -1
        most = max(most, outstanding)
    assert most <= IN_FLIGHT * 2  # never more shards read than handed out to the 2 workers
    first_store = next(i for i, e in enumerate(events) if e[0] == "store")
    assert sum(e[0] == "read" for e in events[:first_store]) <= IN_FLIGHT * 2 < 20


def test_an_input_error_on_a_worker_is_one_line(engine: RayEngine, tmp_path: Path) -> None:
    """A worker whose model is not the driver's refuses in the one line of its own InputError."""
    factory = EmbedderFactory(None, 8, None, True, {"model": "another model"}, device="cpu")
    with pytest.raises(InputError) as err:
        engine.featurize(job_for(texts_of(4), new_cache(tmp_path / "c"), factory))
    assert str(err.value).endswith("model: the embedding model on this worker differs from the driver's "
                                   "(fingerprints differ) (install the same model on every node of the cluster)")
    assert "\n" not in str(err.value) and err.value.fix == "install the same model on every node of the cluster"


# -- what the feature code asks the workers for -----------------------------------------------------------------
class Asked(Exception):
    """Raised by :class:`Recorder` once it has seen the job."""


class Recorder:
    """An engine named ``ray`` that records the job's factory and stops."""

    name = "ray"

    def __init__(self) -> None:
        self.factories: list[Any] = []

    def featurize(self, job: FeatureJob) -> Any:
        self.factories.append(job.factory)
        raise Asked


def test_embedding_and_gradient_factories_carry_the_device(tmp_path: Path) -> None:
    from tasksift.features.gradients import gradient_features
    from tests.train.helpers import tiny_llama

    recorder = Recorder()
    model = tiny_llama(tmp_path / "tiny")
    for device in (None, "cpu", "auto", " AUTO", "cuda", "cuda:1"):
        with pytest.raises(Asked):
            embed_texts(["a", "b"], cache_dir=tmp_path, engine=recorder, device=device, progress=False)
        with pytest.raises(Asked):
            gradient_features(["a", "b"], model=model, proj_dim=8, cache_dir=tmp_path, engine=recorder,
                              device=device, progress=False)
    asked = [f.device for f in recorder.factories]
    # on this machine auto is the CPU here, but the workers' cluster decides; a GPU is asked of the workers even
    # where this process sees none (a head node without a GPU): the engine checks the cluster's when it starts
    assert asked == ["cpu"] * 4 + ["auto"] * 4 + ["cuda"] * 4


def test_the_factories_build_on_the_device_the_worker_is_given(tmp_path: Path) -> None:
    from tasksift.features.embed import Embedder

    settings = Embedder(None).cache_settings()
    factory = EmbedderFactory(None, 8, None, True, settings, device="cuda")
    fn = factory(1, device="cpu")  # the engine's choice wins: a CPU worker builds on the CPU
    assert str(fn.__self__.device) == "cpu"
    np.testing.assert_array_equal(fn(["a text"]), Embedder(None, num_threads=1).encode(["a text"]))
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        has_cuda = False
    if not has_cuda:  # without the engine's choice the factory builds on its own device: a GPU, refused here
        with pytest.raises(InputError, match="torch sees no CUDA device here"):
            factory(1)
