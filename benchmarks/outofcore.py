"""Pools larger than memory: knn and tsds over a pool read from disk block by block, inside a memory cgroup.

    python benchmarks/outofcore.py [--rows 1500000] [--reference-rows 1000000] [--dim 384] [--targets 100]
        [--budget 1%] [--limit 1G] [--float16] [--dir DIR] [--methods knn tsds] [--no-in-memory]

A pool of ``--rows`` x ``--dim`` float32 unit vectors (a seeded mixture of 2,000 clusters, written block by block
through a memory map, so generating it needs no memory either) and ``--targets`` target vectors near 5 of the
clusters go to ``--dir`` (default: a folder under the system's temporary directory; reused when present). Each
run is a fresh process (``tasksift.select`` with the method's defaults; knn with ``index=flat``, exact):

1. ``in memory, N_ref``: the ``--reference-rows`` prefix of the pool read whole into memory (``np.load``), no
   limit: the reference of the ratios.
2. ``memory-mapped, N``: the pool given as ``--pool-vectors`` (memory-mapped, read block by block), the process
   placed in a cgroup v1 memory group limited to ``--limit`` (``memory.limit_in_bytes`` under
   /sys/fs/cgroup/memory; needs root). The file is dropped from the page cache first, so every page it reads is
   charged to the group.
3. ``in memory, N``: the same pool read whole, no limit, to check that the selection is the same (skipped with
   ``--no-in-memory``, for a pool larger than memory).
4. with ``--float16``: the pool stored in float16 (half the disk), memory-mapped in the same cgroup; its
   selection is compared with run 2 (shared rows, weighted by training counts).

Peak anonymous memory is the largest ``RssAnon`` of the process (``/proc/PID/status``, sampled every 20 ms by
this script), the memory the pool must not make grow; the cgroup's own peak (``memory.max_usage_in_bytes``)
counts the page cache of the mapped file as well, which the kernel takes back under the limit. Stage times come
from the manifest (``timings``; TSDS's ``stages``). The one-minute load average is given before and after each
run. Results go to ``<dir>/outofcore.json``; the table is printed as markdown.
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

CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
BLOCK = 100_000
CENTRES = 2000


def parse_size(text: str) -> int | None:
    """``1G``, ``512M``, ``300000000`` -> bytes; ``none`` -> None."""
    text = text.strip().lower()
    if text in ("none", "0", ""):
        return None
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    if text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def generate(path: Path, rows: int, dim: int, seed: int = 0, dtype: Any = np.float32) -> None:
    """``rows`` unit vectors around ``CENTRES`` seeded centres, ``BLOCK`` rows at a time into a memory-mapped
    ``.npy`` (block ``b`` drawn from its own seed, so a shorter pool is a prefix of a longer one)."""
    if path.exists():
        return
    centres = np.random.default_rng([seed, 10**9]).normal(size=(CENTRES, dim)).astype(np.float32)
    tmp = path.with_name(path.name + ".part")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(rows, dim))
    for b, lo in enumerate(range(0, rows, BLOCK)):
        rng = np.random.default_rng([seed, b])
        hi = min(rows, lo + BLOCK)
        block = centres[rng.integers(0, CENTRES, BLOCK)] + 0.6 * rng.normal(size=(BLOCK, dim)).astype(np.float32)
        out[lo:hi] = (block / np.linalg.norm(block, axis=1, keepdims=True))[:hi - lo]
    out.flush()
    del out
    tmp.rename(path)


def targets(path: Path, count: int, dim: int, seed: int = 0) -> None:
    if path.exists():
        return
    centres = np.random.default_rng([seed, 10**9]).normal(size=(CENTRES, dim)).astype(np.float32)
    rng = np.random.default_rng([seed, 10**9 + 1])
    q = centres[np.arange(count) % 5] + 0.6 * rng.normal(size=(count, dim))
    np.save(path, (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32))


def prefix(source: Path, path: Path, rows: int) -> None:
    """The first ``rows`` rows of ``source`` as a file of their own (copied block by block)."""
    if path.exists():
        return
    src = np.load(source, mmap_mode="r")
    tmp = path.with_name(path.name + ".part")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=src.dtype, shape=(rows, src.shape[1]))
    for lo in range(0, rows, BLOCK):
        out[lo:lo + BLOCK] = src[lo:min(rows, lo + BLOCK)]
    out.flush()
    del out
    tmp.rename(path)


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# -- the child: one selection ------------------------------------------------------------------------------------

def child(spec: dict[str, Any]) -> None:
    import tasksift

    t0 = time.perf_counter()
    pool: Any = spec["pool"]
    if spec["in_memory"]:
        pool = np.load(pool)  # read whole into anonymous memory
    read_seconds = time.perf_counter() - t0
    extra = {"index": "flat"} if spec["method"] == "knn" else {}
    sel = tasksift.select(pool_vectors=pool, target_vectors=spec["target"], method=spec["method"],
                          budget=spec["budget"], seed=0, **extra)
    table = sel.tables.get("probability")
    if table is not None:  # TSDS: p of every row with mass, for the total variation between two runs
        np.savez(Path(spec["out"]).with_suffix(".npz"), rows=table.column("row").to_numpy(),
                 p=table.column("probability").to_numpy())
    Path(spec["out"]).write_text(json.dumps({
        "rows": [int(i) for i in sel.indices], "weights": [float(w) for w in sel.weights],
        "read_seconds": read_seconds, "timings": sel.manifest.get("timings", {}),
        "stages": sel.manifest.get("stages", {}), "index": sel.manifest.get("index", {}),
        "density": {k: v for k, v in sel.manifest.get("density", {}).items() if not isinstance(v, list | dict)},
    }))


# -- the parent: cgroups and measurements ------------------------------------------------------------------------

@contextlib.contextmanager
def memory_group(limit: int | None) -> Any:
    """A fresh cgroup v1 memory group limited to ``limit`` bytes (None: no group)."""
    if limit is None:
        yield None
        return
    if not CGROUP_ROOT.is_dir():
        sys.exit(f"outofcore.py: error: no cgroup v1 memory controller at {CGROUP_ROOT}; run with --limit none")
    group = CGROUP_ROOT / f"tasksift-outofcore-{os.getpid()}-{time.monotonic_ns()}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit))
    except OSError as err:
        sys.exit(f"outofcore.py: error: cannot make a memory cgroup at {group} ({err}); run as root or --limit none")
    try:
        yield group
    finally:
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def _status(pid: int) -> dict[str, int]:
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) * 1024
    return out


def run(spec: dict[str, Any], limit: int | None) -> dict[str, Any]:
    """One selection in a fresh process (in a memory group when ``limit``), with its peak memory."""
    out = Path(spec["out"])
    out.unlink(missing_ok=True)
    load_before = os.getloadavg()[0]
    with memory_group(limit) as group:
        def enter() -> None:
            if group is not None:
                (group / "cgroup.procs").write_text(str(os.getpid()))

        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], preexec_fn=enter)
        peak_anon = peak_rss = 0
        while proc.poll() is None:
            status = _status(proc.pid)
            peak_anon = max(peak_anon, status.get("RssAnon", 0))
            peak_rss = max(peak_rss, status.get("VmHWM", 0))
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        group_info: dict[str, Any] = {}
        if group is not None:
            group_info = {"limit_bytes": limit,
                          "max_usage_bytes": int((group / "memory.max_usage_in_bytes").read_text()),
                          "failcnt": int((group / "memory.failcnt").read_text())}
            for line in (group / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    group_info["oom_kills"] = int(line.split()[1])
    result: dict[str, Any] = {"returncode": proc.returncode, "wall_seconds": wall, "peak_anon_bytes": peak_anon,
                              "peak_rss_bytes": peak_rss, "cgroup": group_info,
                              "load": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    if proc.returncode == 0:
        result.update(json.loads(out.read_text()))
    return result


def overlap(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Shared training counts of two selections over the larger total (1: the same rows, the same counts)."""
    wa = dict(zip(a["rows"], a["weights"], strict=True))
    wb = dict(zip(b["rows"], b["weights"], strict=True))
    shared = sum(min(w, wb.get(r, 0.0)) for r, w in wa.items())
    return shared / max(sum(wa.values()), sum(wb.values()))


def total_variation(a: Path, b: Path) -> float:
    """Half the L1 distance between two TSDS probability tables (``.npz`` of rows and p)."""
    pa, pb = np.load(a), np.load(b)
    rows = np.union1d(pa["rows"], pb["rows"])
    dense_a, dense_b = np.zeros(len(rows)), np.zeros(len(rows))
    dense_a[np.searchsorted(rows, pa["rows"])] = pa["p"]
    dense_b[np.searchsorted(rows, pb["rows"])] = pb["p"]
    return 0.5 * float(np.abs(dense_a - dense_b).sum())


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("rows") == b.get("rows") and a.get("weights") == b.get("weights")


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def markdown(report: dict[str, Any]) -> str:
    runs = report["runs"]
    lines = ["| method | run | rows | pool on disk GiB | memory limit | peak anon GiB | peak anon / pool | "
             "cgroup peak GiB (with page cache) | select s | search s | density s | select s / in memory "
             f"{report['reference_rows']:,} | selection | load |", "|" + "---|" * 14]
    for key, r in runs.items():
        method = key.split("/")[0]
        ref = runs.get(f"{method}/in memory, reference")
        if r.get("returncode") != 0:
            lines.append(f"| {method} | {r['label']} | {r['pool_rows']:,} | {gib(r['disk_bytes'])} | "
                         f"{r['limit']} | {gib(r['peak_anon_bytes'])} | | | failed (exit {r['returncode']}) "
                         f"| | | | | {r['load'][0]}-{r['load'][1]} |")
            continue
        select = r["timings"].get("select", 0.0)
        stages = r.get("stages") or {}
        search = stages.get("index", 0.0) + stages.get("search", 0.0) if stages else None
        ratio = select / ref["timings"]["select"] if ref and ref.get("returncode") == 0 else None
        lines.append(
            f"| {method} | {r['label']} | {r['pool_rows']:,} | {gib(r['disk_bytes'])} | {r['limit']} | "
            f"{gib(r['peak_anon_bytes'])} | {r['peak_anon_bytes'] / r['pool_bytes']:.2f} | "
            f"{gib(r['cgroup'].get('max_usage_bytes', 0)) if r['cgroup'] else '-'} | {select:.1f} | "
            f"{'' if search is None else f'{search:.1f}'} | "
            f"{'' if not stages else '{:.1f}'.format(stages.get('density', 0.0))} | "
            f"{'' if ratio is None else f'{ratio:.2f}'} | {r.get('verdict', '')} | {r['load'][0]}-{r['load'][1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="outofcore.py", description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=1_500_000)
    parser.add_argument("--reference-rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--budget", default="1%")
    parser.add_argument("--limit", default="1G", help="memory cgroup limit (none: no cgroup)")
    parser.add_argument("--float16", action="store_true", help="also run on the pool stored in float16")
    parser.add_argument("--no-in-memory", action="store_true", help="skip the in-memory run at --rows")
    parser.add_argument("--methods", nargs="+", default=["knn", "tsds"], choices=["knn", "tsds"])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "tasksift-outofcore")
    args = parser.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    limit = parse_size(args.limit)
    folder: Path = args.dir
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{args.dim}d"
    pool = folder / f"pool-{args.rows}x{stem}.npy"
    target = folder / f"target-{args.targets}x{stem}.npy"
    t0 = time.perf_counter()
    generate(pool, args.rows, args.dim)
    targets(target, args.targets, args.dim)
    reference = folder / f"pool-{args.reference_rows}x{stem}.npy"
    prefix(pool, reference, min(args.reference_rows, args.rows))
    half = folder / f"pool-{args.rows}x{stem}-float16.npy"
    if args.float16 and not half.exists():
        src = np.load(pool, mmap_mode="r")
        out = np.lib.format.open_memmap(half.with_name(half.name + ".part"), mode="w+", dtype=np.float16,
                                        shape=src.shape)
        for lo in range(0, len(src), BLOCK):
            out[lo:lo + BLOCK] = src[lo:lo + BLOCK]
        out.flush()
        del out, src  # a file still mapped here keeps its pages in the page cache, outside the memory group
        half.with_name(half.name + ".part").rename(half)
    print(f"data ready in {time.perf_counter() - t0:.1f} s under {folder}", file=sys.stderr)

    plan = [("in memory, reference", reference, True, None)]
    plan.append(("memory-mapped", pool, False, limit))
    if not args.no_in_memory:
        plan.append(("in memory", pool, True, None))
    if args.float16:
        plan.append(("float16, memory-mapped", half, False, limit))
    report: dict[str, Any] = {"rows": args.rows, "reference_rows": args.reference_rows, "dim": args.dim,
                              "targets": args.targets, "budget": args.budget, "limit": args.limit,
                              "cores": os.cpu_count(), "runs": {}}
    for method in args.methods:
        for label, path, in_memory, group_limit in plan:
            if not in_memory:
                drop_from_page_cache(path)
            spec = {"method": method, "pool": str(path), "target": str(target), "budget": args.budget,
                    "in_memory": in_memory, "out": str(folder / f"{method}-{label.replace(', ', '-')}.json")}
            print(f"{method}: {label} ({path.name}) ...", file=sys.stderr)
            result = run(spec, group_limit)
            shape = np.load(path, mmap_mode="r").shape  # the map is closed at once
            result.update(label=label, out=spec["out"], pool_rows=int(shape[0]), disk_bytes=path.stat().st_size,
                          pool_bytes=int(shape[0]) * int(shape[1]) * 4,
                          limit=args.limit if group_limit is not None else "none")
            report["runs"][f"{method}/{label}"] = result
        runs = {k.split("/", 1)[1]: v for k, v in report["runs"].items() if k.startswith(method + "/")}
        mapped = runs["memory-mapped"]
        if "in memory" in runs and mapped.get("returncode") == 0:
            mapped["verdict"] = "same as in memory" if same(mapped, runs["in memory"]) else "DIFFERS from in memory"
        if "float16, memory-mapped" in runs and runs["float16, memory-mapped"].get("returncode") == 0:
            half_run = runs["float16, memory-mapped"]
            share = overlap(half_run, mapped)
            half_run["verdict"] = f"{share:.1%} shared with float32"
            tables = Path(half_run["out"]).with_suffix(".npz"), Path(mapped["out"]).with_suffix(".npz")
            if all(t.exists() for t in tables):
                half_run["total_variation"] = total_variation(*tables)
                half_run["verdict"] += f", p within total variation {half_run['total_variation']:.2g}"
        reference_run = runs["in memory, reference"]
        if args.reference_rows >= args.rows and reference_run.get("returncode") == 0:
            mapped["verdict"] = "same as in memory" if same(mapped, reference_run) else "DIFFERS from in memory"
    (folder / "outofcore.json").write_text(json.dumps({**report, "runs": {
        k: {key: value for key, value in v.items() if key not in ("rows", "weights")}
        for k, v in report["runs"].items()}}, indent=2))
    print(markdown(report))
    failed = [k for k, v in report["runs"].items() if v.get("returncode") != 0 or "DIFFERS" in v.get("verdict", "")]
    if failed:
        print(f"outofcore.py: failed or different: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
