"""The instruction track's comparison: random, knn, dsir and tsds at one budget, several seeds, several tasks.

    python benchmarks/instruction.py [--tasks tasks/instruction/rt_sentiment,...] [--runs runs/compare]
                                     [--budget 2%] [--seeds 3] [--no-full] [--report-only] [--notes FILE]

For every task, in order, :func:`tasksift.eval.compare.compare` runs (and resumes: every finished selection,
evaluation and training run is kept) the selections and evaluations of ``tasksift compare`` with the same
settings: SmolLM2-135M-Instruct + LoRA, one epoch, 128 tokens, the harness's other defaults; then the full-pool
row (one seed). The full pool's training is the same run for every task of the track (same pairs, settings,
seed and model), so it is trained once and loaded for the others (:mod:`tasksift.train.store`).

The section ``## Instruction tuning: ...`` of ``docs/results.md`` is rewritten after each task from the runs'
``comparison.json`` and ``eval.json`` files (``--report-only``: from the files as they are, running nothing; a
task whose comparison is unfinished is marked partial), and the raw files are copied to
``docs/results/instruction/<task>/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "results.md"
RAW = ROOT / "docs" / "results" / "instruction"
HEADING = "## Instruction tuning: random, knn, dsir, tsds at a 2% budget"
DEFAULT_TASKS = ("rt_sentiment", "wordnet_definition", "chatterbot_answer")
METHODS = ("random", "knn", "dsir", "tsds")
SETTINGS = {"max_length": 128}
EPOCHS = 1


def run_task(task_dir: Path, runs: Path, args: argparse.Namespace) -> None:
    from tasksift.eval.compare import compare

    compare(task_dir, list(METHODS), args.budget, seeds=args.seeds, include_full=args.full, out=runs,
            epochs=EPOCHS, settings=SETTINGS, progress=True)


def _eval_runs(path: Path) -> dict[int, dict[str, Any]]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {int(s): run for s, run in data.get("runs", {}).items()}


def collect(task_dir: Path, runs: Path, seeds: int) -> dict[str, Any]:
    """Per method (and ``none``, ``full``): per-seed metrics and training steps, read from the eval files."""
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for name in ("none", "full"):
        found = _eval_runs(task_dir / "baselines" / name / "eval.json")
        if found:
            rows[name] = found
    for method in METHODS:
        found = {}
        for seed in range(seeds):
            found.update({s: r for s, r in _eval_runs(runs / method / f"seed-{seed}" / "eval.json").items()
                          if s == seed})
        if found:
            rows[method] = found
    return rows


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def task_table(name: str, rows: dict[str, dict[int, dict[str, Any]]], seeds: int, options: int | None) -> str:
    head = f"**{name}**" + (f" ({options} options)" if options else "")
    lines = [head, "", "| method | seeds | accuracy (mean ± std) | per seed | answer loss | vs random, seed by seed "
             "| steps | minutes / seed |", "|---|---|---|---|---|---|---|---|"]
    random_runs = rows.get("random", {})
    for method in ("none", *METHODS, "full"):
        runs = rows.get(method)
        if not runs:
            continue
        order = sorted(runs)
        acc = [runs[s]["metrics"]["accuracy"] for s in order]
        loss = [runs[s]["metrics"]["answer_loss"] for s in order]
        (am, asd), (lm, lsd) = _mean_std(acc), _mean_std(loss)
        per_seed = " / ".join(f"{a:.4f}" for a in acc)
        versus = ""
        if method in METHODS and method != "random":
            common = [s for s in order if s in random_runs]
            if common:
                diffs = [runs[s]["metrics"]["accuracy"] - random_runs[s]["metrics"]["accuracy"] for s in common]
                wins = sum(d > 0 for d in diffs)
                versus = f"{sum(diffs) / len(diffs):+.4f} ({wins} of {len(diffs)} above)"
        steps = (runs[order[0]].get("train") or {}).get("steps", 0)
        minutes = sum(runs[s].get("seconds", 0.0) for s in order) / len(order) / 60
        label = {"none": "none (no finetuning)", "full": "full pool (one epoch)"}.get(method, method)
        lines.append(f"| {label} | {len(order)} | {am:.4f} ± {asd:.4f} | {per_seed} | {lm:.3f} ± {lsd:.3f} | "
                     f"{versus} | {steps} | {minutes:.1f} |")
    missing = [m for m in METHODS if len(rows.get(m, {})) < seeds]
    if missing or "full" not in rows:
        parts = [f"{m} has {len(rows.get(m, {}))} of {seeds} seeds" for m in missing]
        if "full" not in rows:
            parts.append("the full-pool row is not measured yet")
        lines += ["", "Partial: " + "; ".join(parts) + "."]
    return "\n".join(lines)


def markdown(tables: list[str], args: argparse.Namespace, notes: str | None) -> str:
    budget = args.budget
    text = [HEADING, "",
            "SmolLM2-135M-Instruct + LoRA (rank 8 on q_proj and v_proj, learning rate 3e-4, batch 8, fp32), one "
            f"epoch over each selection, pairs cut to {SETTINGS['max_length']} tokens; scored on the task's 300 "
            "held-out test items by option log-likelihood (accuracy) and answer loss. Selections at a "
            f"{budget} budget from the 14,968-record instruction pool, each method with its defaults (tsds: the "
            "reference config). The seed sets both the selection and the training. Nothing was tuned on the "
            "test sets. \"vs random\" is the mean over seeds of (method - random) for the same seed and how many "
            "seeds were above random.",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, CPU only, one torch thread per run, other "
            "jobs running beside (minutes are wall-clock under that load).", "",
            "Command (resumes; `--report-only` rewrites this section from the runs):", "", "```bash",
            "tasksift data build --out tasks/",
            "TASKSIFT_THREADS=1 python benchmarks/instruction.py --tasks "
            + ",".join("tasks/instruction/" + t for t in DEFAULT_TASKS) + " \\",
            f"    --runs runs/compare --budget {budget} --seeds {args.seeds}", "```", "",
            "Each task's runs are the same as `tasksift compare --task tasks/instruction/<task> --methods "
            f"{','.join(METHODS)} --budget {budget} --seeds {args.seeds} --epochs {EPOCHS} --train "
            f"max_length={SETTINGS['max_length']} --out runs/compare/<task>`. Raw `comparison.json` and "
            "`eval.json` files: `docs/results/instruction/<task>/`.", ""]
    text += [t + "\n" for t in tables]
    if notes:
        text += [notes.strip(), ""]
    return "\n".join(text)


def copy_raw(task_dir: Path, runs: Path, name: str) -> None:
    dest = RAW / name
    for src in [runs / "comparison.json", *sorted(runs.glob("*/seed-*/eval.json")),
                *[task_dir / "baselines" / b / "eval.json" for b in ("none", "full")]]:
        if src.is_file():
            rel = src.relative_to(runs) if src.is_relative_to(runs) else Path("baselines") / src.parent.name / src.name
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / rel)


def report(args: argparse.Namespace) -> None:
    from results_doc import write_section

    tables = []
    for task_dir in args.tasks:
        name = task_dir.name
        runs = args.runs / name
        rows = collect(task_dir, runs, args.seeds)
        if not rows:
            continue
        spec = json.loads((task_dir / "task.json").read_text(encoding="utf-8"))
        tables.append(task_table(name, rows, args.seeds, (spec.get("counts") or {}).get("options_per_test")))
        copy_raw(task_dir, runs, name)
    notes = args.notes.read_text(encoding="utf-8") if args.notes else None
    write_section(DOC, HEADING, markdown(tables, args, notes))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(f"tasks/instruction/{t}" for t in DEFAULT_TASKS))
    parser.add_argument("--runs", type=Path, default=Path("runs/compare"))
    parser.add_argument("--budget", default="2%")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-full", dest="full", action="store_false", help="leave out the full-pool row")
    parser.add_argument("--report-only", action="store_true", help="rewrite the section from the runs; run nothing")
    parser.add_argument("--notes", type=Path, default=None, help="markdown appended to the section")
    args = parser.parse_args(argv)
    args.tasks = [Path(t) for t in args.tasks.split(",") if t]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if not args.report_only:
        for task_dir in args.tasks:
            run_task(task_dir, args.runs / task_dir.name, args)
            report(args)
    report(args)


if __name__ == "__main__":
    main()
