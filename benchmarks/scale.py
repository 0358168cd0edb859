"""Scale-out: the local engine against Ray with 1 and 2 workers on this machine, stage by stage.

    python benchmarks/scale.py [--sentences 20000] [--pool 1000000] [--dim 384] [--targets 100] [--budget 1%]

Everything runs in one process against one local Ray cluster started here (``num_cpus`` = the cores there are),
so the ratios in the table are measured in the same run, under the same machine load:

1. embedding: ``--sentences`` real sentences of the npm package ``nlp-corpus`` (fetched once into the download
   cache with ``npm pack``), embedded with all-MiniLM-L6-v2 into a fresh cache directory, end to end (model
   load, encoding, shard writes). Local: torch on every core; Ray: ``ray.data`` over cache shards, each worker
   one CPU (one torch thread).
2. search and selection: ``knn`` and ``tsds`` on a pool of ``--pool`` unit vectors of ``--dim`` dimensions
   (a seeded mixture of clusters) for ``--targets`` target vectors, budget ``--budget``. Local: faiss on every
   core; Ray: the pool cut into one shard per worker (one CPU each), searched exactly in parallel and merged
   per query. Every Ray selection is checked to equal the local one.

Ray's overhead is what its wall time spends outside the workers' computation: starting the cluster, placing
the pool in the object store and starting actors, starting workers and loading the model in each, moving
queries and answers, merging. The results and a projection to 150M examples go to
``benchmarks/results/scale.json``; the table is printed as markdown (it is the README's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import tasksift  # noqa: E402
from tasksift.engine.local import LocalEngine  # noqa: E402
from tasksift.features import default_threads, embed_texts  # noqa: E402

NLP_CORPUS = ("nlp-corpus", "4.4.0")
TARGET_ROWS = 150_000_000


def nlp_corpus_sentences(n: int) -> list[str]:
    """The first ``n`` sentences of npm ``nlp-corpus`` (100 files of 1,000 sentences), in file order."""
    from tasksift.data.fetch import fetch_npm

    tarball = fetch_npm(*NLP_CORPUS).path
    out: list[str] = []
    with tarfile.open(tarball, "r:gz") as tf:
        for i in range(100):
            member = tf.extractfile(f"package/builds/doc-{i}.json")
            if member is None:
                break
            out.extend(str(s) for s in json.load(member) if str(s).strip())
            if len(out) >= n:
                break
    if len(out) < n:
        sys.exit(f"nlp-corpus holds {len(out)} sentences, fewer than --sentences {n}")
    return out[:n]


def vector_pool(n: int, dim: int, targets: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around 2,000 random centres (pool), and targets near 5 of them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, dim)).astype(np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        block = centres[rng.integers(0, len(centres), hi - lo)] + 0.6 * rng.normal(size=(hi - lo, dim))
        x[lo:hi] = block / np.linalg.norm(block, axis=1, keepdims=True)
    q = centres[np.arange(targets) % 5] + 0.6 * rng.normal(size=(targets, dim))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    return x, q


def run_embedding(texts: list[str], engines: dict[str, Any], shard_size: int) -> dict[str, dict[str, Any]]:
    out = {}
    for name, engine in engines.items():
        with tempfile.TemporaryDirectory(prefix="tasksift-scale-") as cache:
            t0 = time.perf_counter()
            result = embed_texts(texts, cache_dir=cache, shard_size=shard_size, progress=True, engine=engine)
            wall = time.perf_counter() - t0
        workers = getattr(engine, "workers", 1)
        compute = result.compute_seconds  # summed over shards: the workers' encoding time
        out[name] = {"rows": len(texts), "wall_seconds": round(wall, 2), "rows_per_second": round(len(texts) / wall, 2),
                     "shards": result.n_computed, "compute_seconds": round(compute, 2),
                     "rows_per_second_per_worker_computing": round(len(texts) / compute * 1, 2),
                     "overhead_seconds": round(wall - compute / workers, 2) if name != "local" else None}
        print(f"embedding {name}: {out[name]}", file=sys.stderr, flush=True)
    return out


def run_selection(x: np.ndarray, q: np.ndarray, budget: str, engines: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    reference: dict[str, Any] = {}
    for method in ("knn", "tsds"):
        for name, engine in engines.items():
            t0 = time.perf_counter()
            sel = tasksift.select(pool_vectors=x, target_vectors=q, method=method, budget=budget, seed=0,
                                  engine=engine)
            wall = time.perf_counter() - t0
            index = sel.manifest.get("index", {})
            row: dict[str, Any] = {"wall_seconds": round(wall, 2), "select_seconds": sel.manifest["timings"]["select"],
                                   "selected": len(sel)}
            if "search" in index:
                row["search"] = index["search"]
            if method == "tsds":
                row["stages"] = sel.manifest.get("stages")
                row["density_rows"] = sel.manifest.get("density", {}).get("rows_computed")
                row["compared_distances"] = sel.manifest.get("density", {}).get("compared_distances")
            if name == "local":
                reference[method] = sel
            else:
                ref = reference[method]
                row["same_as_local"] = bool(sel.indices.tolist() == ref.indices.tolist()
                                            and np.array_equal(sel.weights, ref.weights))
            out[f"{method}/{name}"] = row
            print(f"{method} {name}: {row}", file=sys.stderr, flush=True)
    return out


def projection(results: dict[str, Any], dim: int, pool: int, targets: int) -> dict[str, Any]:
    """Cost of 150M examples on N machines of 16 cores, from the per-worker rates measured here."""
    emb = results["embedding"]
    per_worker = emb["ray-2"]["rows_per_second_per_worker_computing"]
    sel = results["selection"]
    knn_search = sel["knn/ray-2"].get("search", {})
    # distances per second per worker in the exact search (the slowest shard per call bounds the wall time)
    knn_rate = targets * pool / max(knn_search.get("worker_seconds", 0.0), 1e-9) / 2
    tsds = sel["tsds/ray-2"]
    compared = (tsds.get("compared_distances") or 0) + targets * pool
    tsds_worker = tsds.get("search", {}).get("worker_seconds", 0.0)
    tsds_rate = compared / max(tsds_worker, 1e-9) / 2 if tsds_worker else None
    bytes_total = TARGET_ROWS * dim * 4
    rows = []
    for machines in (1, 8, 32, 128):
        cores = 16 * machines
        embed_hours = TARGET_ROWS / (per_worker * cores) / 3600
        knn_minutes = targets * TARGET_ROWS / (knn_rate * cores) / 60
        tsds_minutes = (compared / pool * TARGET_ROWS) / (tsds_rate * cores) / 60 if tsds_rate else None
        rows.append({"machines": machines, "cores": cores, "embed_hours": round(embed_hours, 1),
                     "knn_search_minutes": round(knn_minutes, 2),
                     "tsds_search_and_density_minutes": round(tsds_minutes, 2) if tsds_minutes else None,
                     "vectors_gib_per_machine": round(bytes_total / machines / 2**30, 1)})
    return {"rows": TARGET_ROWS, "dim": dim, "vectors_gib": round(bytes_total / 2**30, 1),
            "embed_rows_per_second_per_core": per_worker, "knn_distances_per_second_per_core": round(knn_rate),
            "tsds_distances_per_second_per_core": round(tsds_rate) if tsds_rate else None,
            "tsds_distances_per_pool_row": round(compared / pool, 1), "by_machines": rows}


def markdown(results: dict[str, Any]) -> str:
    emb, sel = results["embedding"], results["selection"]
    lines = ["| stage | local | Ray, 1 worker | Ray, 2 workers | Ray 2 / local | Ray 2 / Ray 1 | "
             "Ray overhead (2 workers) |", "|---|---|---|---|---|---|---|"]
    e = {k: emb[k]["rows_per_second"] for k in ("local", "ray-1", "ray-2")}
    lines.append(f"| embedding, {emb['local']['rows']:,} sentences (rows/s) | {e['local']:.1f} | {e['ray-1']:.1f} | "
                 f"{e['ray-2']:.1f} | {e['ray-2'] / e['local']:.2f}x | {e['ray-2'] / e['ray-1']:.2f}x | "
                 f"{emb['ray-2']['overhead_seconds']:.0f} s of {emb['ray-2']['wall_seconds']:.0f} s |")
    for method in ("knn", "tsds"):
        w = {k: sel[f"{method}/{k}"]["select_seconds"] for k in ("local", "ray-1", "ray-2")}
        search = sel[f"{method}/ray-2"].get("search", {})
        overhead = "-"
        if search:
            overhead = (f"{search.get('overhead_seconds', 0):.1f} s (placing the pool: "
                        f"{search.get('place_seconds', 0):.1f} s)")
        same = all(sel[f"{method}/{k}"].get("same_as_local") for k in ("ray-1", "ray-2"))
        lines.append(f"| {method} on {results['config']['pool']:,} x {results['config']['dim']} vectors (s) "
                     f"| {w['local']:.1f} | {w['ray-1']:.1f} | {w['ray-2']:.1f} | {w['local'] / w['ray-2']:.2f}x "
                     f"faster | {w['ray-1'] / w['ray-2']:.2f}x faster | {overhead}{'' if same else ' (DIFFERENT)'} |")
    lines.append(f"| Ray cluster start (s) | - | {results['ray_start_seconds']:.1f} | | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=20_000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--budget", default="1%")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scale.json")
    args = parser.parse_args()

    import ray

    from tasksift.engine.ray_engine import RayEngine

    cores = default_threads()
    t0 = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t0
    engines = {"local": LocalEngine(), "ray-1": RayEngine(workers=1), "ray-2": RayEngine(workers=2)}
    results: dict[str, Any] = {
        "config": {"sentences": args.sentences, "shard_size": args.shard_size, "pool": args.pool, "dim": args.dim,
                   "targets": args.targets, "budget": args.budget, "cores": cores},
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "ray": ray.__version__},
        "ray_start_seconds": round(ray_start, 2),
    }
    texts = nlp_corpus_sentences(args.sentences)
    results["embedding"] = run_embedding(texts, engines, args.shard_size)
    x, q = vector_pool(args.pool, args.dim, args.targets)
    results["selection"] = run_selection(x, q, args.budget, engines)
    results["projection"] = projection(results, args.dim, args.pool, args.targets)
    results["table"] = markdown(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(results["table"])
    print(json.dumps(results["projection"], indent=2))
    ray.shutdown()


if __name__ == "__main__":
    main()
