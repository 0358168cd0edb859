"""Windowed SPICE over records: the proxy computing every window's rows, against a first pass over the pool first.

    python benchmarks/spice_proxy.py [--tasks tasks] [--n 384] [--window 64] [--budget 10%] [--model minilm]
                                     [--rounds 3] [--threads N] [--out benchmarks/results/spice_proxy.json]

With windows, SPICE's proxy takes a step every ``T`` picks and every later window reads its rows' gradients
from the stepped proxy. The two ways of running that, on the same records, settings and seed:

- ``windows only`` (what ``tasksift.select`` does): no pool features up front; the proxy computes each window's
  rows as the window starts, the first ones from its unstepped weights.
- ``first pass + windows`` (what it did before, and what ``fit`` does when given the pool's vectors and a
  proxy): the pool's gradient features first, then the windows after the first step re-read from the proxy.

Each side runs in a fresh, empty cache (nothing is reused), alternating which goes first over ``--rounds``
rounds; the table gives the median seconds, the rows the proxy computed (counted: deterministic) and the
ratio, for two kinds of records: the instruction pool (prompt-masked pairs, short) and BBC news texts (long).
It also says whether both ways picked the same rows (they may differ where two candidates tie to float32
noise: the first windows' rows come from differently padded batches). Results go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def inputs(tasks: Path, n: int) -> dict[str, dict[str, Any]]:
    """The two kinds of records, the first ``n`` of each pool, with the text view each task reads them by."""
    general = json.loads((tasks / "instruction" / "general" / "task.json").read_text(encoding="utf-8"))
    bbc = tasks / "classification" / "bbc"

    def head(path: Path) -> list[dict[str, Any]]:
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line, _ in zip(f, range(n), strict=False)]

    return {
        "instruction pairs": {"records": head(tasks / "instruction" / "pool.jsonl"),
                              "view": {"template": general["text_template"]}},
        "bbc news": {"records": head(bbc / "pool.jsonl"), "view": {"text_field": "text"}},
    }


class Counting:
    """Wraps the proxy trainer: counts the rows its ``gradients`` computes."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.rows = 0

    def gradients(self, rows: Any) -> Any:
        self.rows += len(rows)
        return self.trainer.gradients(rows)

    def step(self, rows: Any) -> Any:
        return self.trainer.step(rows)

    def describe(self) -> dict[str, Any]:
        return self.trainer.describe()


def run(way: str, records: list[dict[str, Any]], view: dict[str, Any], *, budget: str, window: int, seed: int,
        model: str, cache: Path) -> dict[str, Any]:
    """One selection of ``way`` (``"windows only"`` or ``"first pass + windows"``) in the empty ``cache``."""
    from tasksift.api import parse_budget, select
    from tasksift.features.gradients.recipe import GradientRecipe, gradient_texts, proxy_trainer, selection_gradients
    from tasksift.records import records_from_dicts
    from tasksift.selectors.spice import SpiceSelector

    t0 = time.perf_counter()
    if way == "windows only":
        sel = select(records, None, method="spice", budget=budget, seed=seed, window=window, model=model,
                     cache_dir=cache, **view)
        computed, windows = sel.manifest["proxy"]["computed_windows"], sel.manifest["spice"]["windows"]
        if computed != windows:  # a window with no share of the budget is never read
            raise SystemExit(f"spice_proxy.py: error: {computed} of {windows} windows read; raise --budget")
        rows = len(records)
        picks = sel.indices.tolist()
    else:
        pool = records_from_dicts(records, **view, chat_model=model)
        recipe = GradientRecipe.of(SpiceSelector.feature_defaults, {})
        texts, _, _ = gradient_texts(pool, None, model, recipe.values["kind"])
        features, _ = selection_gradients(texts, None, recipe, model=model, cache_dir=cache, progress=False)
        proxy = Counting(proxy_trainer(texts, recipe, model=model, cache_dir=cache, progress=False))
        selector = SpiceSelector(parse_budget(budget, len(records)), seed=seed, window=window)
        picks = selector.fit(features.array(), proxy=proxy).indices_.tolist()
        rows = len(records) + proxy.rows
    return {"seconds": time.perf_counter() - t0, "rows": rows, "picks": picks}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=Path, default=ROOT / "tasks", help="folder `tasksift data build` wrote")
    parser.add_argument("--n", type=int, default=384, help="records of each pool")
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--budget", default="10%")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="minilm", help="the proxy (smollm2: the papers' setting, slower)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS / "spice_proxy.json")
    args = parser.parse_args(argv)
    if not (args.tasks / "instruction" / "general" / "task.json").is_file():
        raise SystemExit(f"spice_proxy.py: error: no tasks in {args.tasks}; run `tasksift data build --out "
                         f"{args.tasks}` first")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    ways = ("windows only", "first pass + windows")
    results: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()},
                               "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                           "platform": platform.platform()}, "inputs": {}}
    loads = [os.getloadavg()[0]]
    for name, spec in inputs(args.tasks, args.n).items():
        runs: dict[str, list[dict[str, Any]]] = {way: [] for way in ways}
        for r in range(args.rounds):
            for way in (ways if r % 2 == 0 else ways[::-1]):
                with tempfile.TemporaryDirectory(prefix="spice-proxy-") as tmp:
                    runs[way].append(run(way, spec["records"], spec["view"], budget=args.budget,
                                         window=args.window, seed=args.seed, model=args.model, cache=Path(tmp)))
                loads.append(os.getloadavg()[0])
                console.print(f"{name} round {r}: {way} {runs[way][-1]['seconds']:.1f}s")
        results["inputs"][name] = {way: {"seconds": [round(x["seconds"], 3) for x in runs[way]],
                                         "median_seconds": round(statistics.median(x["seconds"] for x in runs[way]),
                                                                 3),
                                         "rows": runs[way][0]["rows"]} for way in ways}
        results["inputs"][name]["same_picks"] = runs[ways[0]][0]["picks"] == runs[ways[1]][0]["picks"]
        results["inputs"][name]["records"] = len(spec["records"])
    results["load_1min"] = {"median": round(statistics.median(loads), 2), "max": round(max(loads), 2)}
    table = Table(title=f"windowed spice, {args.model} proxy, {args.rounds} rounds, median seconds "
                        f"(load {results['load_1min']['median']}, max {results['load_1min']['max']}, "
                        f"{os.cpu_count()} CPUs)")
    for column in ("records", "way", "rows computed", "seconds", "ratio to windows only", "same picks"):
        table.add_column(column)
    for name, res in results["inputs"].items():
        base = res[ways[0]]
        for way in ways:
            table.add_row(f"{name} ({res['records']})", way, str(res[way]["rows"]), f"{res[way]['median_seconds']:.1f}",
                          f"{res[way]['median_seconds'] / base['median_seconds']:.2f}x", str(res["same_picks"]))
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from tasksift.util.io import write_text_atomic

    write_text_atomic(args.out, json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
