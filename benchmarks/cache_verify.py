"""What checking the feature cache costs: a warm read without checks against the same read with every shard's
bytes checked against the checksum in its marker.

    python benchmarks/cache_verify.py [--rows 163840] [--dims 384,1024] [--shard-size 4096] [--rounds 7]

For each width a cache of ``--rows`` random float32 rows (texts of about 100 characters) is filled once, then
read warm (every shard already in the page cache), alternating within each round so that machine noise hits both
variants alike:

- unchecked: :meth:`FeatureCache.compute` finds every shard finished, then the rows are copied out of the
  memory-mapped shards (the read as it was before checksums);
- checked inline: the same :meth:`FeatureCache.compute`, then :meth:`CachedFeatures.matrix` reading each shard into
  its rows and hashing each chunk as it arrives (what ``matrix`` does on a busy machine);
- checked by a helper thread: the same, with the hashing done by a second thread while the next shard is read
  (what ``matrix`` does when a core is likely idle, :func:`tasksift.features.shards.spare_core`).

``compute`` hashes every text to find its shard, which a warm read cannot skip; the table shows the whole read
(plan and copy) and the copy alone. Times are medians over the rounds; the machine's load average (1, 5, 15
minutes, from ``os.getloadavg``) is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from tasksift.features import FeatureCache, shards


def texts_of(n: int) -> list[str]:
    return [f"row {i}: a sentence of about one hundred characters, like the records a pool holds ({i * 7919})"
            for i in range(n)]


def unchecked_matrix(result) -> np.ndarray:  # noqa: ANN001 - a CachedFeatures
    """The rows copied out of the memory-mapped shards without any check of their bytes."""
    out = np.empty(result.shape, dtype=np.float32)
    start = 0
    for path in result.shard_paths:
        shard = np.load(path, mmap_mode="r")
        out[start:start + shard.shape[0]] = shard
        start += shard.shape[0]
    return out


def measure(root: Path, rows: int, dim: int, shard_size: int, rounds: int) -> dict[str, float]:
    texts = texts_of(rows)
    rng = np.random.default_rng(dim)
    cache = FeatureCache(root, "bench", {"dim": dim, "shard_size": shard_size})

    def fill(chunk: list[str]) -> np.ndarray:
        return rng.standard_normal((len(chunk), dim), dtype=np.float32)

    def refuse(chunk: list[str]) -> np.ndarray:
        raise AssertionError("a warm read computed a shard")

    cache.compute(texts, fill, progress=False)
    variants = ("unchecked", "inline", "helper")
    times: dict[str, list[float]] = {name: [] for name in ("plan", *variants)}
    for r in range(rounds + 1):  # round 0 warms the page cache and is not counted
        t0 = time.perf_counter()
        result = cache.compute(texts, refuse, progress=False)
        if r:
            times["plan"].append(time.perf_counter() - t0)
        matrices = []
        for name in variants[r % 3:] + variants[:r % 3]:
            shards.spare_core = lambda name=name: name == "helper"
            t = time.perf_counter()
            matrices.append(unchecked_matrix(result) if name == "unchecked" else result.matrix())
            if r:
                times[name].append(time.perf_counter() - t)
        assert all(np.array_equal(m, matrices[0]) for m in matrices)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=163_840)
    parser.add_argument("--dims", default="384,1024", help="comma-separated widths")
    parser.add_argument("--shard-size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="where to build the caches (default: a temp dir)")
    args = parser.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    console = Console(width=160)
    load_before = os.getloadavg()
    picks = "a helper thread" if shards.spare_core() else "inline hashing"
    table = Table(title=f"warm cache read, {args.rows:,} rows, shards of {args.shard_size}, checksum "
                        f"{shards.ALGORITHM}, medians of {args.rounds} rounds; overheads: of the copy / of the whole "
                        "read (plan + copy)")
    for column in ("dim", "MB", "plan s", "copy s", "inline s", "inline overhead", "helper s", "helper overhead"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for dim in dims:
            m = measure(Path(tmp) / str(dim), args.rows, dim, args.shard_size, args.rounds)
            whole = m["plan"] + m["unchecked"]
            table.add_row(str(dim), f"{args.rows * dim * 4 / 1e6:,.0f}", f"{m['plan']:.4f}", f"{m['unchecked']:.4f}",
                          *[part for name in ("inline", "helper") for part in (
                              f"{m[name]:.4f}", f"{m[name] / m['unchecked'] - 1:+.1%} / "
                                                f"{(m['plan'] + m[name]) / whole - 1:+.1%}")])
    console.print(table)
    console.print(f"matrix() would now use {picks}.")
    load_after = os.getloadavg()
    loads = [", ".join(f"{v:.2f}" for v in load) for load in (load_before, load_after)]
    console.print(f"load average (1, 5, 15 min): before {loads[0]}; after {loads[1]}; {os.cpu_count()} CPUs; "
                  f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
