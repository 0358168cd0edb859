"""Streamed records: peak anonymous memory of loading a jsonl pool and planning its feature-cache shards, with the
texts in a plain list and in a streamed column (:mod:`tasksift.records.column`).

    python benchmarks/records_memory.py [--sizes 200000 1000000 3000000] [--dir DIR] [--id-field]

For each size a jsonl pool of short generated records (``{"id": ..., "text": ...}``, about 90 bytes a line; a
seeded word mix, so a smaller pool is a prefix of a larger one) goes to ``--dir`` (default: a folder under the
system's temporary directory; reused when present). Each run is a fresh process that imports tasksift, loads the
pool (``load_records(path, stream=False)``, then ``stream=True``; ids hash the content, or ``--id-field``: the
``id`` field) and plans the pool's shards in a feature cache (``FeatureCache.plan``: every text read and hashed,
4,096 rows a shard), which is what embedding does before it computes a shard; no model runs.

Peak anonymous memory is the largest ``RssAnon`` of the process (``/proc/PID/status``, sampled every 20 ms), the
memory that must not grow with the pool (page cache of the file is not in it); ``over import`` subtracts the
process's ``RssAnon`` right after its imports. The ratio is list over column, same size, same run of this script.
The one-minute load average is given before and after each run. Results go to ``<dir>/records_memory.json``; the
table is printed as markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

WORDS = ("rain wind market price vote team score film song data model chip city river road school doctor law "
         "budget energy").split()
BLOCK = 100_000


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` records, ``BLOCK`` at a time (block ``b`` from its own seed)."""
    if path.exists():
        return
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8") as f:
        for b, lo in enumerate(range(0, rows, BLOCK)):
            rng = np.random.default_rng([seed, b])
            words = rng.integers(0, len(WORDS), size=(BLOCK, 9))
            lines = []
            for k in range(min(BLOCK, rows - lo)):
                text = f"note {lo + k}: " + " ".join(WORDS[w] for w in words[k])
                lines.append(json.dumps({"id": f"r{lo + k}", "text": text}))
            f.write("\n".join(lines) + "\n")
    tmp.rename(path)


def anon_bytes(pid: int | str = "self") -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def child(spec: dict[str, Any]) -> None:
    from tasksift.features import FeatureCache
    from tasksift.records import load_records

    base = anon_bytes()
    t0 = time.perf_counter()
    records = load_records(spec["pool"], stream=spec["stream"], id_field="id" if spec["id_field"] else None)
    t1 = time.perf_counter()
    cache = FeatureCache(spec["cache"], "records-memory", {"shard_size": 4096})
    plan = cache.plan(records.texts)
    t2 = time.perf_counter()
    Path(spec["out"]).write_text(json.dumps({
        "base_anon_bytes": base, "load_seconds": t1 - t0, "plan_seconds": t2 - t1, "shards": len(plan),
        "streamed": records.streamed, "rows": len(records), "first_key": plan[0][2], "last_key": plan[-1][2],
        "last_id": records.ids[-1]}))


def run(spec: dict[str, Any]) -> dict[str, Any]:
    out = Path(spec["out"])
    out.unlink(missing_ok=True)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)])
    peak = 0
    while proc.poll() is None:
        peak = max(peak, anon_bytes(proc.pid))
        time.sleep(0.02)
    result = {"returncode": proc.returncode, "wall_seconds": time.perf_counter() - t0, "peak_anon_bytes": peak,
              "load": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    if proc.returncode == 0:
        result.update(json.loads(out.read_text()))
    return result


def mib(n: float) -> str:
    return f"{n / 2**20:.0f}"


def markdown(runs: list[dict[str, Any]]) -> str:
    lines = ["| rows | file MiB | texts | load s | plan s | peak anon MiB | over import MiB | bytes / row | "
             "peak anon list / column | load |", "|" + "---|" * 10]
    by_rows = {(r["size"], r["mode"]): r for r in runs}
    for r in runs:
        if r["returncode"] != 0:
            lines.append(f"| {r['size']:,} | {mib(r['file_bytes'])} | {r['mode']} | failed (exit {r['returncode']}) "
                         f"| | | | | | {r['load'][0]}-{r['load'][1]} |")
            continue
        over = r["peak_anon_bytes"] - r["base_anon_bytes"]
        ratio = ""
        plain, streamed = by_rows.get((r["size"], "list")), by_rows.get((r["size"], "column"))
        if r["mode"] == "column" and plain and plain["returncode"] == 0:
            ratio = f"{plain['peak_anon_bytes'] / r['peak_anon_bytes']:.1f}"
            ratio += f" (over import {(plain['peak_anon_bytes'] - plain['base_anon_bytes']) / max(over, 1):.1f})"
        elif r["mode"] == "list" and streamed and streamed["returncode"] == 0:
            ratio = "reference"
        lines.append(f"| {r['size']:,} | {mib(r['file_bytes'])} | {r['mode']} | {r['load_seconds']:.1f} | "
                     f"{r['plan_seconds']:.1f} | {mib(r['peak_anon_bytes'])} | {mib(over)} | "
                     f"{over / r['size']:.0f} | {ratio} | {r['load'][0]}-{r['load'][1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000, 3_000_000])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "tasksift-records-memory")
    parser.add_argument("--id-field", action="store_true", help="ids from the records' id field")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    args.dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for size in args.sizes:
        pool = args.dir / f"pool-{size}.jsonl"
        generate(pool, size)
        for mode in ("list", "column"):
            with tempfile.TemporaryDirectory(dir=args.dir) as cache:
                spec = {"pool": str(pool), "stream": mode == "column", "id_field": args.id_field, "cache": cache,
                        "out": str(args.dir / "child.json")}
                result = run(spec)
            result.update(size=size, mode=mode, file_bytes=pool.stat().st_size)
            runs.append(result)
            print(f"{size:,} rows, {mode}: exit {result['returncode']}, peak anon {mib(result['peak_anon_bytes'])} "
                  f"MiB, {result['wall_seconds']:.0f}s", file=sys.stderr)
        pair = runs[-2:]
        if all(r["returncode"] == 0 for r in pair):
            agree = all(pair[0][k] == pair[1][k] for k in ("rows", "shards", "first_key", "last_key", "last_id"))
            pair[1]["same_plan_and_ids"] = agree
            if not agree:
                print(f"{size:,} rows: the list and the column disagree", file=sys.stderr)
    (args.dir / "records_memory.json").write_text(json.dumps(runs, indent=1))
    print(markdown(runs))
    return 0 if all(r["returncode"] == 0 and r.get("same_plan_and_ids", True) for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
