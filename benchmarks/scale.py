"""Scale-out: the local engine against Ray with 1 and 2 workers on this machine, stage by stage.

    python benchmarks/scale.py [--sentences 20000] [--pool 1000000] [--dim 384] [--targets 100] [--budget 1%]

Everything runs in one process against one local Ray cluster started here (``num_cpus`` = the cores there are),
so the ratios in the table are measured in the same run, under the same machine load:

1. search and selection: ``knn`` (exact, ``--index flat``) and ``tsds`` on a pool of ``--pool`` unit vectors of
   ``--dim`` dimensions (a seeded mixture of clusters) for ``--targets`` target vectors, budget ``--budget``.
   Local: faiss on every core; Ray: the pool cut into one shard per worker (one CPU each), searched exactly in
   parallel and merged per query. Every Ray selection is checked to equal the local one.
2. embedding: ``--sentences`` real sentences of the npm package ``nlp-corpus`` (fetched once into the download
   cache with ``npm pack``), embedded with all-MiniLM-L6-v2 into a fresh cache directory, end to end (model
   load, encoding, shard writes). Local: torch on every core; Ray: actors over cache shards, each worker
   one CPU (one torch thread).

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
    from tasksift.eval.taskgen.fetch import fetch_npm

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
            # exact search for both (``auto`` would build an IVF index at this size for knn, which is approximate
            # and, on Ray, built per shard: not comparable row for row); TSDS's auto prefetch is exact here, and its
            # density is density="auto" (approximate at this size, as measured; the default "radius" is exact)
            extra = {"density": "auto"} if method == "tsds" else {}
            sel = tasksift.select(pool_vectors=x, target_vectors=q, method=method, budget=budget, seed=0,
                                  engine=engine, index="flat" if method == "knn" else "auto", **extra)
            wall = time.perf_counter() - t0
            index = sel.manifest.get("index", {})
            row: dict[str, Any] = {"wall_seconds": round(wall, 2), "select_seconds": sel.manifest["timings"]["select"],
                                   "selected": len(sel)}
            row["index_build_seconds"] = index.get("build_seconds")
            if "search" in index:
                row["search"] = {**index["search"], "distances": len(q) * len(x) * index["search"]["calls"]}
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
    """Cost of 150M examples on N machines of 16 cores, from the rates measured here.

    Per-core rates come from the one-worker Ray runs (one worker, one thread, the whole pool): embedding rows/s,
    exact-search distances/s, the speed of placing vectors in the object store. TSDS's density runs in the driver
    (not distributed), so its time is projected on one machine, scaled with the pool when it is exact.
    """
    emb, sel = results["embedding"], results["selection"]
    embed_per_core = emb["ray-1"]["rows"] / emb["ray-1"]["compute_seconds"]  # one thread, model loaded
    knn = sel["knn/ray-1"]["search"]
    knn_per_core = knn["distances"] / max(knn["worker_seconds"], 1e-9)
    prefetch = sel["tsds/ray-1"]["search"]
    prefetch_per_core = prefetch["distances"] / max(prefetch["worker_seconds"], 1e-9)
    place_gib_per_s = pool * dim * 4 / 2**30 / max(knn["place_seconds"], 1e-9)
    density_seconds = sel["tsds/local"]["stages"]["density"]
    scale = TARGET_ROWS / pool
    bytes_total = TARGET_ROWS * dim * 4
    rows = []
    for machines in (1, 8, 32, 128):
        cores = 16 * machines
        rows.append({
            "machines": machines, "cores": cores,
            "embed_hours": round(TARGET_ROWS / (embed_per_core * cores) / 3600, 1),
            "knn_search_minutes": round(targets * TARGET_ROWS * knn["calls"] / (knn_per_core * cores) / 60, 1),
            "tsds_prefetch_minutes": round(targets * TARGET_ROWS / (prefetch_per_core * cores) / 60, 1),
            "vectors_gib_per_machine": round(bytes_total / machines / 2**30, 1),
        })
    return {"rows": TARGET_ROWS, "dim": dim, "targets": targets, "vectors_gib": round(bytes_total / 2**30, 1),
            "embed_rows_per_second_per_core": round(embed_per_core, 2),
            "knn_distances_per_second_per_core": round(knn_per_core),
            "tsds_prefetch_distances_per_second_per_core": round(prefetch_per_core),
            "placing_gib_per_second": round(place_gib_per_s, 3),
            "placing_all_vectors_from_one_driver_hours": round(bytes_total / 2**30 / place_gib_per_s / 3600, 1),
            "tsds_density_seconds_here": density_seconds,
            "tsds_density_rows_here": sel["tsds/local"]["density_rows"],
            "tsds_density_hours_one_machine_if_linear_in_pool": round(density_seconds * scale / 3600, 1),
            "by_machines": rows}


def markdown(results: dict[str, Any]) -> str:
    emb, sel = results["embedding"], results["selection"]
    engines = ("local", "ray-1", "ray-2")
    lines = ["| stage | local | Ray, 1 worker | Ray, 2 workers | speed-up, Ray 2 vs local | speed-up, Ray 2 vs "
             "Ray 1 | Ray overhead (2 workers) |", "|---|---|---|---|---|---|---|"]

    def row(label: str, values: list[float], overhead: str, rate: bool = False) -> None:
        a, b, c = values
        ratio = f"{c / a:.2f}x | {c / b:.2f}x" if rate else f"{a / c:.2f}x | {b / c:.2f}x"
        digits = 1 if rate else 2
        lines.append(f"| {label} | {a:.{digits}f} | {b:.{digits}f} | {c:.{digits}f} | {ratio} | {overhead} |")

    row(f"embedding {emb['local']['rows']:,} sentences (rows/s)", [emb[k]["rows_per_second"] for k in engines],
        f"{emb['ray-2']['overhead_seconds']:.0f} s of {emb['ray-2']['wall_seconds']:.0f} s", rate=True)
    pool = f"{results['config']['pool']:,} x {results['config']['dim']}"
    knn = sel["knn/ray-2"]["search"]
    row(f"knn, {pool} pool: selection (s)", [sel[f"knn/{k}"]["select_seconds"] for k in engines],
        f"{knn['overhead_seconds']:.1f} s, of which placing the pool {knn['place_seconds']:.1f} s")
    tsds = sel["tsds/ray-2"]["search"]
    row(f"tsds, {pool} pool: prefetch search (s)",
        [sel[f"tsds/{k}"]["stages"]["index"] + sel[f"tsds/{k}"]["stages"]["search"] for k in engines],
        f"{tsds['overhead_seconds']:.1f} s, of which placing the pool {tsds['place_seconds']:.1f} s")
    row("tsds: density, in the driver on every engine (s)", [sel[f"tsds/{k}"]["stages"]["density"] for k in engines],
        "-")
    row("tsds: selection in all (s)", [sel[f"tsds/{k}"]["select_seconds"] for k in engines], "-")
    same = all(sel[f"{m}/{k}"]["same_as_local"] for m in ("knn", "tsds") for k in ("ray-1", "ray-2"))
    lines.append(f"| Ray cluster start (s) | - | {results['ray_start_seconds']:.1f} | | | | |")
    lines.append("")
    lines.append("Ray selections identical to local: " + ("yes, every one" if same else "NO"))
    return "\n".join(lines)


def save(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=20_000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--budget", default="1%")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scale.json")
    parser.add_argument("--report-only", action="store_true",
                        help="Recompute the projection and the table of the results already in --out, and print them.")
    args = parser.parse_args()
    if args.report_only:
        results = json.loads(args.out.read_text(encoding="utf-8"))
        config = results["config"]
        results["projection"] = projection(results, config["dim"], config["pool"], config["targets"])
        results["table"] = markdown(results)
        save(results, args.out)
        print(results["table"])
        print(json.dumps(results["projection"], indent=2))
        return

    import ray

    from tasksift.engine.ray import RayEngine

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
    x, q = vector_pool(args.pool, args.dim, args.targets)
    results["selection"] = run_selection(x, q, args.budget, engines)
    del x, q
    save(results, args.out)  # each part is kept as soon as it is measured
    texts = nlp_corpus_sentences(args.sentences)
    results["embedding"] = run_embedding(texts, engines, args.shard_size)
    save(results, args.out)
    results["projection"] = projection(results, args.dim, args.pool, args.targets)
    results["table"] = markdown(results)
    save(results, args.out)
    print(results["table"])
    print(json.dumps(results["projection"], indent=2))
    ray.shutdown()


if __name__ == "__main__":
    main()
