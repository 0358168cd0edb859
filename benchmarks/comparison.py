"""Selection methods compared on a track's tasks: one budget, several seeds, with no-finetuning and full-pool rows.

    python benchmarks/comparison.py [--track instruction|retrieval] [--tasks DIR,...] [--runs runs/compare]
                                    [--seeds 3] [--no-full] [--restore] [--report-only] [--notes FILE]

Tracks (``TRACKS``): ``instruction`` (rt_sentiment, wordnet_definition, chatterbot_answer; random, knn, dsir,
tsds at 2%; SmolLM2-135M-Instruct + LoRA, one epoch, 128 tokens); ``gradients-2pct`` and ``gradients-10pct``
(the same tasks and training; random, less, fishersft, spice at 2% and at 10%; the 2% runs share the instruction
track's folders, so its random rows are read back, not trained again), ``gradients-2pct-window`` (spice with
``window=128`` and its proxy steps, the paper's recipe, at 2%; its none, random and full rows are read from the
2% track's folders) and ``retrieval`` (BBC headline -> body;
random, knn, dsir, tsds, opera-sp at 10%; the MiniLM bi-encoder with the harness's defaults).

Seed by seed, for every task in order, :func:`tasksift.eval.compare.compare` runs (and resumes: every finished
selection, evaluation and training run is kept) what ``tasksift compare`` runs with the same settings up to that
seed, then the full-pool row (one seed). A training that several tasks share (the same pairs, settings, seed and
model: the full pool, random selections, selectors that do not read the target set) is trained once and loaded
for the others (:mod:`tasksift.train.store`); going seed by seed scores it on every task while it is at hand,
and an interrupted track has every task at its first seeds.

The track's section of ``docs/results.md`` is rewritten after each task from the runs' ``eval.json`` files
(``--report-only``: from the files as they are, running nothing; an unfinished comparison is marked partial),
and the raw files are copied to ``docs/results/<track>/<task>/``: every ``eval.json``, the tasks' ``none`` and
``full`` baselines, and each run's ``selection.parquet`` and ``manifest.json``. ``--restore`` puts them back
(where absent) before running, so a fresh machine resumes a track where the committed files leave it: an
evaluation is reused only while its key (task, selection, model and settings, by content) still matches, and a
selection only while it was made on the task's pool file; anything else is run again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "results.md"


@dataclass(frozen=True)
class Track:
    heading: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    budget: str
    metric: str
    second: str  # the second metric shown
    epochs: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method, as `--param method.key=value`
    setup: str = ""
    task_root: str = ""  # tasks live under tasks/<task_root>/ (default: the track's name)
    runs_dir: str = "{task}"  # a task's runs under --runs (the same folder for one budget: rows are shared)
    random_from: str = ""  # the name of another track whose random row is read back (from its runs), not run


_INSTRUCTION_SETUP = (
    "SmolLM2-135M-Instruct + LoRA (rank 8 on q_proj and v_proj, learning rate 3e-4, batch 8, fp32), one epoch over "
    "each selection, pairs cut to 128 tokens; scored on the task's 300 held-out test items by option "
    "log-likelihood (accuracy) and answer loss. Selections from the 14,968-record instruction pool")
_GRADIENT_SETUP = (
    ". Gradient features: LoRA gradients (rank 8 on query and value) of the bundled MiniLM proxy (the selectors' "
    "default when these runs were made; now `model=minilm`, the cheap proxy), randomly projected to 1,024 "
    "dimensions (Rademacher, seed 0); less warms the proxy up for 8 Adam "
    "steps and preconditions the pool's gradients with LESS's rule; spice and fishersft (spice with lam=0) run the "
    "exact greedy over the whole pool without interleaved proxy steps and do not read the target set, so their "
    "selection is the same for every task")

_WINDOW_SETUP = (
    ". Gradient features as in the gradient selectors' section (MiniLM proxy, LoRA rank 8, 1,024 dimensions). "
    "spice runs the paper's recipe: the pool shuffled by the seed and cut into windows of 128 rows, each taking "
    "its share of the budget greedily, and the proxy taking one AdamW step (learning rate 1e-4) on every 10 "
    "selected rows, each later window re-reading its rows' gradients from the stepped proxy. Its selection "
    "differs by seed but not by task (it does not read the target set). The none, random and full-pool rows are "
    "those of the 2% gradient track (the same runs, not run again)")

#: the gradient tracks' proxy, named since SmolLM2 became the gradient selectors' default
_MINILM: dict[str, dict[str, Any]] = {m: {"model": "minilm"} for m in ("less", "fishersft", "spice")}

TRACKS = {
    "instruction": Track(
        heading="## Instruction tuning: random, knn, dsir, tsds at a 2% budget",
        tasks=("rt_sentiment", "wordnet_definition", "chatterbot_answer"), methods=("random", "knn", "dsir", "tsds"),
        budget="2%", metric="accuracy", second="answer_loss", epochs=1, settings={"max_length": 128},
        setup=_INSTRUCTION_SETUP),
    "gradients-2pct": Track(
        heading="## Gradient selectors: spice, fishersft, less against random at a 2% budget",
        tasks=("rt_sentiment", "wordnet_definition", "chatterbot_answer"),
        methods=("random", "less", "fishersft", "spice"), budget="2%", metric="accuracy", second="answer_loss",
        epochs=1, settings={"max_length": 128}, params=_MINILM, setup=_INSTRUCTION_SETUP + _GRADIENT_SETUP,
        task_root="instruction"),
    "gradients-10pct": Track(
        heading="## Gradient selectors: spice, fishersft, less against random at a 10% budget",
        tasks=("rt_sentiment", "wordnet_definition", "chatterbot_answer"),
        methods=("random", "less", "fishersft", "spice"), budget="10%", metric="accuracy", second="answer_loss",
        epochs=1, settings={"max_length": 128}, params=_MINILM, setup=_INSTRUCTION_SETUP + _GRADIENT_SETUP,
        task_root="instruction", runs_dir="10pct-{task}"),
    "gradients-2pct-window": Track(
        heading="## SPICE with the paper's windows and proxy steps, against random at a 2% budget",
        tasks=("rt_sentiment", "wordnet_definition", "chatterbot_answer"), methods=("spice",),
        budget="2%", metric="accuracy", second="answer_loss", epochs=1, settings={"max_length": 128},
        params={"spice": {"window": 128, "model": "minilm"}}, setup=_INSTRUCTION_SETUP + _WINDOW_SETUP,
        task_root="instruction",
        runs_dir="window-{task}", random_from="gradients-2pct"),
    "retrieval": Track(
        heading="## Retrieval: selecting training pairs at a 10% budget",
        tasks=("bbc",), methods=("random", "knn", "dsir", "tsds", "opera-sp"), budget="10%", metric="ndcg@10",
        second="recall@20", runs_dir="retrieval-{task}",
        setup="all-MiniLM-L6-v2 bi-encoder, InfoNCE with in-batch and one mined hard negative per query "
              "(temperature 0.02, learning rate 3e-5, batch 32, 3 epochs, 128 tokens, fp32); scored on the task's "
              "300 test queries against its whole corpus (NDCG@10, Recall@20). Selections from the task's pool "
              "of query-document pairs (BBC headline -> body: 1,790 pairs; corpus 2,078 documents)"),
}


def run_task(track: Track, task_dir: Path, runs: Path, args: argparse.Namespace, seeds: int) -> None:
    from tasksift.eval.compare import compare

    compare(task_dir, list(track.methods), track.budget, seeds=seeds, include_full=args.full, out=runs,
            epochs=track.epochs, settings=track.settings or None, params=track.params or None, progress=True)


def _eval_runs(path: Path) -> dict[int, dict[str, Any]]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {int(s): run for s, run in data.get("runs", {}).items()}


def collect(track: Track, task_dir: Path, runs: Path, seeds: int, random_runs: Path | None = None
            ) -> dict[str, Any]:
    """Per method (and ``none``, ``full``; ``random`` from ``random_runs`` when given): per-seed metrics and
    training steps, read from the eval files."""
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for name in ("none", "full"):
        found = _eval_runs(task_dir / "baselines" / name / "eval.json")
        if found:
            rows[name] = found
    sources = [(m, runs) for m in track.methods] + ([("random", random_runs)] if random_runs is not None else [])
    for method, where in sources:
        found = {}
        for seed in range(seeds):
            found.update({s: r for s, r in _eval_runs(where / method / f"seed-{seed}" / "eval.json").items()
                          if s == seed})
        if found:
            rows[method] = found
    return rows


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def task_table(track: Track, name: str, rows: dict[str, dict[int, dict[str, Any]]], seeds: int,
               options: int | None) -> str:
    from tasksift.eval.compare import run_cost_seconds

    head = f"**{name}**" + (f" ({options} options)" if options else "")
    m1, m2 = track.metric, track.second
    lines = [head, "", f"| method | seeds | {m1} (mean ± std) | per seed | {m2} | vs random, seed by seed | steps "
             "| minutes / seed |", "|---|---|---|---|---|---|---|---|"]
    random_runs = rows.get("random", {})
    for method in ("none", *(("random",) if track.random_from else ()), *track.methods, "full"):
        runs = rows.get(method)
        if not runs:
            continue
        order = sorted(runs)
        first = [runs[s]["metrics"][m1] for s in order]
        second = [runs[s]["metrics"][m2] for s in order]
        (am, asd), (lm, lsd) = _mean_std(first), _mean_std(second)
        per_seed = " / ".join(f"{a:.4f}" for a in first)
        versus = ""
        if method in track.methods and method != "random":
            common = [s for s in order if s in random_runs]
            if common:
                diffs = [runs[s]["metrics"][m1] - random_runs[s]["metrics"][m1] for s in common]
                wins = sum(d > 0 for d in diffs)
                versus = f"{sum(diffs) / len(diffs):+.4f} ({wins} of {len(diffs)} above)"
        steps = (runs[order[0]].get("train") or {}).get("steps", 0)
        minutes = sum(run_cost_seconds(runs[s]) for s in order) / len(order) / 60
        label = {"none": "none (no finetuning)", "full": "full pool"}.get(method, method)
        lines.append(f"| {label} | {len(order)} | {am:.4f} ± {asd:.4f} | {per_seed} | {lm:.4f} ± {lsd:.4f} | "
                     f"{versus} | {steps} | {minutes:.1f} |")
    missing = [m for m in track.methods if len(rows.get(m, {})) < seeds]
    if missing or "full" not in rows:
        parts = [f"{m} has {len(rows.get(m, {}))} of {seeds} seeds" for m in missing]
        if "full" not in rows:
            parts.append("the full-pool row is not measured yet")
        lines += ["", "Partial: " + "; ".join(parts) + "."]
    return "\n".join(lines)


def markdown(track_name: str, track: Track, tables: list[str], args: argparse.Namespace, notes: str | None) -> str:
    root = track.task_root or track_name
    tasks = ",".join(f"tasks/{root}/{t}" for t in track.tasks)
    training = " ".join([*([f"--epochs {track.epochs}"] if track.epochs else []),
                         *(f"--train {k}={v}" for k, v in track.settings.items())])
    changed = "".join(f"; {m} with " + ", ".join(f"{k}={v}" for k, v in kv.items())
                      for m, kv in track.params.items())
    text = [track.heading, "",
            f"{track.setup}, at a {track.budget} budget, each method with its defaults"
            f"{' (tsds: the reference config)' if 'tsds' in track.methods else ''}{changed}. The seed sets both "
            "the selection and the training. Nothing was tuned on the test sets. \"vs random\" is the mean over "
            "seeds of (method - random) for the same seed and how many seeds were above random.",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, CPU only, one torch thread per run, other "
            "jobs running beside. Minutes / seed: the training's own time (all its resumed parts; a training "
            "shared by several rows, such as the full pool's or two methods' identical selections, counts in "
            "each) plus the scoring (near zero where a shared training's scores on that test set were read "
            "back), wall-clock under that load.", "",
            "Command (resumes; on a fresh machine `--restore` first puts this section's committed raw files back; "
            "`--report-only` rewrites this section from the runs):", "", "```bash",
            "tasksift data build --out tasks/",
            f"TASKSIFT_THREADS=1 python benchmarks/comparison.py --track {track_name} --tasks {tasks} \\",
            f"    --runs runs/compare --seeds {args.seeds}", "```", "",
            f"Each task's runs are those of `tasksift compare --task tasks/{root}/<task> --methods "
            f"{','.join(track.methods)} --budget {track.budget} --seeds {args.seeds} "
            + (f"{training} " if training else "")
            + "".join(f"--param {m}.{k}={v} " for m, kv in track.params.items() for k, v in kv.items())
            + f"--out runs/compare/{track.runs_dir.format(task='<task>')}`. Raw "
            "`comparison.json` and `eval.json` files: "
            f"`docs/results/{track_name}/<task>/`.", ""]
    text += [t + "\n" for t in tables]
    if notes:
        text += [notes.strip(), ""]
    return "\n".join(text)


#: what a selection run directory keeps in the raw files: enough to train on it again (and to check its pool)
RUN_FILES = ("eval.json", "selection.parquet", "manifest.json")


def copy_raw(track_name: str, track: Track, task_dir: Path, runs: Path, name: str) -> None:
    dest = ROOT / "docs" / "results" / track_name / name
    kept = sorted(p for m in track.methods for f in RUN_FILES for p in runs.glob(f"{m}/seed-*/{f}"))
    for src in [runs / "comparison.json", *kept,
                *[task_dir / "baselines" / b / "eval.json" for b in ("none", "full")]]:
        if src.is_file():
            rel = src.relative_to(runs) if src.is_relative_to(runs) else Path("baselines") / src.parent.name / src.name
            if same_but_call_time(src, dest / rel):
                continue
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / rel)


def same_but_call_time(src: Path, dest: Path) -> bool:
    """Whether ``dest`` is already ``src`` up to the seconds the last call took (an evaluation read back from its
    store differs from the committed one only there): such a file is not rewritten."""
    if src.suffix != ".json" or not dest.is_file():
        return False
    try:
        a, b = (json.loads(p.read_text(encoding="utf-8")) for p in (src, dest))
    except ValueError:
        return False
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return a == b
    return {k: v for k, v in a.items() if k != "call_seconds"} == {k: v for k, v in b.items() if k != "call_seconds"}


def restore(track_name: str, task_dir: Path, runs_root: Path) -> int:
    """Put a track's committed raw files for one task back where a run reads them, where absent (the random row's
    too when the track reads it from another track); the number of files put back. A run whose selection was made
    on another pool file than the task's is left out (it would only be refused)."""
    from tasksift.eval.tasks import load_task

    track = TRACKS[track_name]
    pool_sha = load_task(task_dir).pool.file_sha256
    sources = [(track_name, None)] + ([(track.random_from, "random")] if track.random_from else [])
    copied = 0
    for source, only in sources:
        raw = ROOT / "docs" / "results" / source / task_dir.name
        runs = task_runs(runs_root, source, task_dir.name)
        if not raw.is_dir():
            continue
        pairs = [(p, task_dir / p.relative_to(raw)) for p in raw.glob("baselines/*/eval.json")] if only is None else []
        for seed_dir in sorted(raw.glob(f"{only or '*'}/seed-*")):
            manifest = seed_dir / "manifest.json"
            if manifest.is_file():
                made_on = ((json.loads(manifest.read_text(encoding="utf-8")).get("inputs") or {}).get("pool") or {})
                if made_on.get("sha256") not in (None, pool_sha):
                    continue
            pairs += [(p, runs / p.relative_to(raw)) for p in seed_dir.iterdir() if p.name in RUN_FILES]
        for src, dst in pairs:
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                copied += 1
    return copied


def task_runs(runs_root: Path, track_name: str, task: str) -> Path:
    """Where a track keeps one task's runs under ``--runs``."""
    return runs_root / TRACKS[track_name].runs_dir.format(task=task)


def runs_of(args: argparse.Namespace, task_dir: Path) -> Path:
    return task_runs(args.runs, args.track, task_dir.name)


def report(args: argparse.Namespace) -> None:
    from results_doc import write_section

    track = TRACKS[args.track]
    tables = []
    for task_dir in args.tasks:
        name = task_dir.name
        runs = runs_of(args, task_dir)
        random_runs = task_runs(args.runs, track.random_from, name) if track.random_from else None
        rows = collect(track, task_dir, runs, args.seeds, random_runs)
        if not rows:
            continue
        spec = json.loads((task_dir / "task.json").read_text(encoding="utf-8"))
        options = (spec.get("counts") or {}).get("options_per_test")
        tables.append(task_table(track, name, rows, args.seeds, options))
        copy_raw(args.track, track, task_dir, runs, name)
    notes = args.notes.read_text(encoding="utf-8") if args.notes else None
    write_section(DOC, track.heading, markdown(args.track, track, tables, args, notes))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--track", choices=sorted(TRACKS), default="instruction")
    parser.add_argument("--tasks", default=None, help="task directories, comma-separated (default: the track's "
                                                      "tasks under tasks/<track>/)")
    parser.add_argument("--runs", type=Path, default=Path("runs/compare"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-full", dest="full", action="store_false", help="leave out the full-pool row")
    parser.add_argument("--report-only", action="store_true", help="rewrite the section from the runs; run nothing")
    parser.add_argument("--notes", type=Path, default=None, help="markdown appended to the section")
    parser.add_argument("--restore", action="store_true", help="first put the committed raw files back where absent "
                                                               "(a fresh machine resumes where they leave off)")
    args = parser.parse_args(argv)
    track = TRACKS[args.track]
    tasks = args.tasks or ",".join(f"tasks/{track.task_root or args.track}/{t}" for t in track.tasks)
    args.tasks = [Path(t) for t in tasks.split(",") if t]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.restore:
        for task_dir in args.tasks:
            print(f"{task_dir.name}: {restore(args.track, task_dir, args.runs)} committed files put back")
    if not args.report_only:
        for seeds in range(1, args.seeds + 1):
            for task_dir in args.tasks:
                run_task(track, task_dir, runs_of(args, task_dir), args, seeds)
                report(args)
    report(args)


if __name__ == "__main__":
    main()
