"""The duplicates track: tsds, knn, dsir and random on the pool with 1,000 near-copies against the clean pool.

    TASKSIFT_THREADS=1 python benchmarks/duplicates.py [--tasks rt_sentiment,...] [--tasks-root tasks]
                                                       [--runs runs/compare] [--seeds 3] [--report-only]

TSDS's claim: its kernel-density term keeps a selection from piling onto near-duplicates, so its quality holds
when the pool holds many near-copies. ``tasksift data build`` writes ``instruction/pool-dups.jsonl`` (the
14,968-record pool and 1,000 near-copies: 200 of one pool record of each of five tasks, among them the three
measured here) and ``instruction-dups/<task>/`` (the task with that pool, the same target and test files).

For every seed (all tasks at seed 0 first), every task and method, the run is what

    tasksift compare --task tasks/instruction-dups/<task> --methods random,knn,dsir,tsds --budget 299 \\
        --seeds <seed+1> --no-full --epochs 1 --train max_length=128 --out runs/compare/dups-<task>

runs (resumed: finished selections and evaluations are kept; a random selection, the same for every task, is
trained once). 299 examples is the clean pool's 2%, so both pools give the same budget. The clean pool's rows
are the instruction track's committed ``eval.json`` files (``docs/results/instruction/<task>``), the same
methods, seeds and training. Copies taken: selected pool rows at or after the first injected line, and those
that copy an example of the task itself (``on_task`` in task.json). The section ``## Duplicates: ...`` of
``docs/results.md`` and the raw files in ``docs/results/duplicates/<task>/`` are rewritten after every task;
``--restore`` puts the raw files back on a fresh machine before running.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "results.md"
RAW = ROOT / "docs" / "results" / "duplicates"
CLEAN = ROOT / "docs" / "results" / "instruction"
HEADING = "## Duplicates: tsds, knn, dsir, random with 1,000 near-copies in the pool"
TASKS = ("rt_sentiment", "wordnet_definition", "chatterbot_answer")
METHODS = ("random", "knn", "dsir", "tsds")
BUDGET = "299"
SETTINGS = {"max_length": 128}
RUN_FILES = ("eval.json", "selection.parquet", "manifest.json")


def run_task(task_dir: Path, runs: Path, seeds: int) -> None:
    from tasksift.eval.compare import compare

    compare(task_dir, list(METHODS), BUDGET, seeds=seeds, include_full=False, out=runs, epochs=1,
            settings=dict(SETTINGS), progress=True)


def _accuracies(folder: Path, method: str, seeds: int) -> dict[int, float]:
    out = {}
    for seed in range(seeds):
        path = folder / method / f"seed-{seed}" / "eval.json"
        if path.is_file():
            runs = json.loads(path.read_text(encoding="utf-8")).get("runs", {})
            if str(seed) in runs:
                out[seed] = float(runs[str(seed)]["metrics"]["accuracy"])
    return out


def copies_taken(selection: Path, spec: dict[str, Any]) -> tuple[int, int]:
    """(near-copies selected, of them copies of this task's own example), counting repeats once per row."""
    import pyarrow.parquet as pq

    rows = sorted(set(pq.read_table(selection, columns=["row"]).column("row").to_pylist()))
    dups = spec["pool_dups"]
    first = int(dups["first_injected_line"])
    own = [d["lines"] for d in dups["seeds"] if d.get("on_task")]
    taken = [r for r in rows if r >= first]
    return len(taken), sum(1 for r in taken for lo, hi in own if lo <= r < hi)


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, var ** 0.5


def task_table(task_dir: Path, runs: Path, seeds: int) -> tuple[str, list[dict[str, Any]]]:
    spec = json.loads((task_dir / "task.json").read_text(encoding="utf-8"))
    name = task_dir.name
    lines = [f"**{name}**", "", "| method | seeds | clean pool (mean ± std) | with copies (mean ± std) "
             "| change, seed by seed | copies taken / seed (own task's) | per seed, with copies |",
             "|---|---|---|---|---|---|---|"]
    found = []
    for method in METHODS:
        clean, dups = _accuracies(CLEAN / name, method, seeds), _accuracies(runs, method, seeds)
        both = sorted(set(clean) & set(dups))
        if not both:
            continue
        copies = [copies_taken(runs / method / f"seed-{s}" / "selection.parquet", spec) for s in both]
        (cm, cs), (dm, ds) = _mean_std([clean[s] for s in both]), _mean_std([dups[s] for s in both])
        change = [dups[s] - clean[s] for s in both]
        found.append({"method": method, "seeds": both, "clean": [clean[s] for s in both],
                      "dups": [dups[s] for s in both], "copies": copies})
        lines.append(f"| {method} | {len(both)} | {cm:.4f} ± {cs:.4f} | {dm:.4f} ± {ds:.4f} | "
                     f"{sum(change) / len(change):+.4f} ({' / '.join(f'{c:+.4f}' for c in change)}) | "
                     f"{' / '.join(f'{a} ({b})' for a, b in copies)} | {' / '.join(f'{dups[s]:.4f}' for s in both)} |")
    missing = [m for m in METHODS if len(set(_accuracies(runs, m, seeds))) < seeds]
    if missing:
        lines += ["", "Partial: " + "; ".join(f"{m} has {len(_accuracies(runs, m, seeds))} of {seeds} seeds"
                                               for m in missing) + "."]
    return "\n".join(lines), found


def markdown(tables: list[str], seeds: int) -> str:
    text = [HEADING, "",
            "SmolLM2-135M-Instruct + LoRA exactly as in the instruction track (rank 8 on q_proj and v_proj, learning "
            "rate 3e-4, batch 8, fp32, one epoch, pairs cut to 128 tokens), scored on each task's 300 held-out test "
            "items. Each method selects 299 examples (the clean pool's 2%) from `pool-dups.jsonl`: the 14,968-record "
            "pool and 1,000 near-copies (1 to 3 character edits), 200 each of one pool record of five tasks, one "
            "of them an example of the task measured. The clean-pool column is the instruction track's runs (the "
            "same methods, seeds and training). The seed sets the selection and the training. \"Copies taken\": "
            "selected rows that are near-copies, and in brackets those copying the task's own example.",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, CPU only, one torch thread per run, other jobs "
            "running beside.", "",
            "Command (resumes; `--restore` first puts the committed raw files back on a fresh machine; `--report-only` "
            "rewrites this section from the runs):", "", "```bash", "tasksift data build --out tasks/",
            f"TASKSIFT_THREADS=1 python benchmarks/duplicates.py --runs runs/compare --seeds {seeds}", "```", "",
            "Raw `eval.json`, `selection.parquet` and `manifest.json` files: `docs/results/duplicates/<task>/`.", ""]
    reading = RAW / "reading.md"  # the reading, written by hand as the runs come in; kept when tables change
    tail = [reading.read_text(encoding="utf-8").strip() + "\n"] if reading.is_file() else []
    return "\n".join(text + [t + "\n" for t in tables] + tail)


def copy_raw(runs: Path, name: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from comparison import same_but_call_time

    for src in sorted(p for m in METHODS for f in RUN_FILES for p in runs.glob(f"{m}/seed-*/{f}")):
        dest = RAW / name / src.relative_to(runs)
        if not same_but_call_time(src, dest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)


def restore(runs: Path, name: str) -> int:
    copied = 0
    for src in sorted((RAW / name).glob("*/seed-*/*")):
        dst = runs / src.relative_to(RAW / name)
        if src.name in RUN_FILES and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            copied += 1
    return copied


def report(args: argparse.Namespace) -> list[dict[str, Any]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results_doc import write_section

    tables, found = [], []
    for name in args.tasks:
        runs = args.runs / f"dups-{name}"
        table, rows = task_table(args.tasks_root / "instruction-dups" / name, runs, args.seeds)
        if rows:
            tables.append(table)
            found.append({"task": name, "rows": rows})
            copy_raw(runs, name)
    write_section(args.doc, HEADING, markdown(tables, args.seeds))
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--tasks-root", type=Path, default=Path("tasks"))
    parser.add_argument("--runs", type=Path, default=Path("runs/compare"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--restore", action="store_true")
    args = parser.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    if args.restore:
        for name in args.tasks:
            print(f"{name}: {restore(args.runs / f'dups-{name}', name)} committed files put back")
    if not args.report_only:
        for seeds in range(1, args.seeds + 1):
            for name in args.tasks:
                run_task(args.tasks_root / "instruction-dups" / name, args.runs / f"dups-{name}", seeds)
                report(args)
    report(args)


if __name__ == "__main__":
    main()
