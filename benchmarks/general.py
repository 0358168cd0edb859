"""The general track: SPICE's own setting, one selection for instruction tuning in general, scored on every task.

    TASKSIFT_THREADS=2 python benchmarks/general.py [--task tasks/instruction/general] [--runs runs/compare]
                                                    [--seeds 3] [--budget 10%] [--no-full] [--report-only]
                                                    [--restore] [--cut-down N] [--rows ROW ...] [--explain]

``tasksift data build`` writes ``instruction/general``: the 14,968-record instruction pool; as target, the first
10 target examples of each of the seven tasks (70, each naming its task); as test, the union of the seven test
sets (2,100 items), scored per task (``accuracy/<task>``) and by their mean (``macro_accuracy``, the metric).

First no finetuning (only scoring, so it comes first), then the rows (``ROWS``), each the runs of ``tasksift
compare --task tasks/instruction/general --budget 10% --epochs 1 --train max_length=128`` for its method and
parameters, seed by seed (every row at seed 0 first, then 1...; ``--rows`` runs only the rows named, ``"full
pool"`` among them): random;
tsds (the reference config); spice with the paper's recipe (windows of 128 rows, a proxy step every 10
selections); fishersft (spice with lam=0); less with the target's tasks as its domains (the best cosine per task,
averaged over tasks); spice again with the cheap MiniLM proxy (``model=minilm``); and less with its budget split
across the target's tasks (``per_task``, our addition, not the paper's rule). The gradient rows take
their gradients from SmolLM2-135M-Instruct, the model being finetuned, LoRA rank 8 on q_proj and v_proj, the
response's loss with the prompt masked (the selectors' default proxy). Then the full pool (one training, last:
it is 50 times a 10% run). Everything resumes: finished selections, trainings, scores and feature shards are kept
(the training store and the feature cache); a selection stopped half way starts again.

The section ``## General instruction tuning: ...`` of ``docs/results.md`` and the raw files under
``docs/results/general/`` are rewritten after every row. ``--cut-down N`` runs the same rows on the first N pool
records (a task written next to the runs: N pool records, 2 target and 2 test items per task), 1 seed, 8 training
steps and no full-pool row: the check that the command works end to end, not a result (it writes no doc).

``--explain`` (after the runs, or alone with ``--report-only``) describes what the selections took, from the pool's
SmolLM2 gradients (the gradient rows' own features, read from the feature cache: computed there if missing, which
is hours on a CPU): per task of the pool, its share, the median length of a record (input and output, in
characters), the median gradient norm, the mean cosine between two of its gradients and the effective rank of 500
of them (``exp`` of the entropy of their normalised squared singular values; seed 0); per row and seed, the
selection's share of each task, the median length and the median pool percentile of its picks' gradient norms,
and how many of its picks had a conflict penalty above zero. It writes ``docs/results/general/selections.md``,
which the section shows under the table, and saves the gradient norms and the pool's profile beside it
(``pool-gradients.json``, keyed by the pool's sha256), so a later ``--explain`` on a fresh machine reads them
instead of computing the gradients again.

A selector that does not read the seed (fishersft, less: ``Selector.reads_seed``) selects once; its later seeds
train a copy of the first seed's selection (``tasksift compare``), so with ``--restore`` they need no features.
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "results.md"
RAW = ROOT / "docs" / "results" / "general"
HEADING = "## General instruction tuning: one selection scored on every task (SPICE's setting)"
#: row name -> (method, its parameters as `tasksift compare --param method.key=value` gives them)
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "random": ("random", {}),
    "tsds": ("tsds", {}),
    "spice": ("spice", {"window": 128}),
    "fishersft": ("fishersft", {}),
    "less": ("less", {}),  # domains: the target's tasks, read at run time
    "spice (MiniLM proxy)": ("spice", {"window": 128, "model": "minilm"}),
    "less (per task)": ("less", {"per_task": True}),  # our addition: the budget split across the target's tasks
}
#: the folder of a row that varies a method (the methods under their own names share ``<runs>/general``)
VARIANT_DIRS = {"spice (MiniLM proxy)": "general-spice-minilm", "less (per task)": "general-less-per-task"}
RUN_FILES = ("eval.json", "selection.parquet", "manifest.json")
#: the pool's gradient norms and task profile that ``--explain`` saved (beside the raw runs)
GRADIENT_SUMMARY = "pool-gradients.json"
#: the one-training row that ``--rows`` can name besides ``ROWS``
FULL = "full pool"
#: rows the gradient profile samples per task for the cosine and the effective rank
PROFILE_SAMPLE = 500


def row_dir(runs: Path, row: str) -> Path:
    """Where a row's compare runs live: ``<runs>/general`` for the methods under their own names, a folder of
    its own for a variant."""
    return runs / VARIANT_DIRS.get(row, "general")


def target_domains(task_dir: Path) -> list[str]:
    spec = json.loads((task_dir / "task.json").read_text(encoding="utf-8"))
    lines = (task_dir / spec.get("target", "target.jsonl")).read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["task"] for line in lines if line.strip()]


def run_row(task_dir: Path, runs: Path, row: str, seeds: int, budget: str, train: dict[str, Any]) -> None:
    from tasksift.eval.compare import compare

    method, params = ROWS[row]
    params = dict(params)
    if method == "less":
        params["domains"] = target_domains(task_dir)
    compare(task_dir, [method], budget, seeds=seeds, include_full=False, include_none=False, out=row_dir(runs, row),
            params={method: params}, progress=True, **train)


def _eval(path: Path) -> dict[int, dict[str, float]]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {int(s): r["metrics"] for s, r in data.get("runs", {}).items()}


def collect(task_dir: Path, runs: Path, seeds: int) -> dict[str, dict[int, dict[str, float]]]:
    rows = {"none (no finetuning)": _eval(task_dir / "baselines" / "none" / "eval.json")}
    for row, (method, _) in ROWS.items():
        rows[row] = {s: m for seed in range(seeds)
                     for s, m in _eval(row_dir(runs, row) / method / f"seed-{seed}" / "eval.json").items() if s == seed}
    rows[FULL] = _eval(task_dir / "baselines" / "full" / "eval.json")
    return {k: v for k, v in rows.items() if v}


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, var ** 0.5


def table(rows: dict[str, dict[int, dict[str, float]]], tasks: list[str], seeds: int) -> str:
    head = "| row | seeds | macro accuracy (mean ± std) | per seed | vs random, seed by seed | " + \
        " | ".join(tasks) + " |"
    lines = [head, "|" + "---|" * (5 + len(tasks))]
    rand = rows.get("random", {})
    for name, runs in rows.items():
        order = sorted(runs)
        macro = [runs[s]["macro_accuracy"] for s in order]
        m, sd = _mean_std(macro)
        common = [s for s in order if s in rand] if name not in ("random", FULL, "none (no finetuning)") else []
        diffs = [runs[s]["macro_accuracy"] - rand[s]["macro_accuracy"] for s in common]
        versus = f"{sum(diffs) / len(diffs):+.4f} ({sum(d > 0 for d in diffs)} of {len(diffs)} above)" if diffs else ""
        per_task = [sum(runs[s][f"accuracy/{t}"] for s in order) / len(order) for t in tasks]
        lines.append(f"| {name} | {len(order)} | {m:.4f} ± {sd:.4f} | {' / '.join(f'{v:.4f}' for v in macro)} | "
                     f"{versus} | " + " | ".join(f"{v:.4f}" for v in per_task) + " |")
    missing = [f"{r} has {len(rows.get(r, {}))} of {seeds} seeds" for r in ROWS if len(rows.get(r, {})) < seeds]
    if FULL not in rows:
        missing.append("the full-pool row is not measured yet")
    if missing:
        lines += ["", "Partial: " + "; ".join(missing) + "."]
    return "\n".join(lines)


def markdown(body: str, args: argparse.Namespace) -> str:
    return "\n".join([
        HEADING, "",
        "SPICE selects for instruction tuning in general and is scored on a suite of tasks; this track asks that "
        "question. The task `instruction/general`: the 14,968-record instruction pool; as target, 10 examples of "
        "each of the seven tasks (70); as test, the union of the seven 300-item test sets (2,100 items), scored by "
        "option log-likelihood per task and by the macro average over tasks (each task counts once). "
        f"SmolLM2-135M-Instruct + LoRA (rank 8 on q_proj and v_proj, learning rate 3e-4, batch 8, fp32), one epoch "
        f"over each selection at a {args.budget} budget, pairs cut to 128 tokens. Gradient rows: per-example LoRA "
        "gradients (rank 8, q_proj and v_proj) of SmolLM2 itself, the loss of the response only with the prompt "
        "masked, projected to 1,024 dimensions; spice runs the paper's recipe (windows of 128 rows, one proxy "
        "step per 10 selections), fishersft is spice with lam=0, less reads the target's tasks as its domains; the "
        "row after it is spice with the cheap MiniLM proxy, to show what the proxy changes; the last, less with "
        "`per_task` (our addition: each of the seven tasks takes a seventh of the budget by its own score, in "
        "turn). tsds: the reference "
        "config. The seed sets the selection and the training; nothing was tuned on the test sets.",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, CPU only, one or two torch threads per run "
        "(`TASKSIFT_THREADS`), other jobs running beside.", "",
        "Command (resumes; `--restore` first puts the committed raw files back on a fresh machine; `--report-only` "
        "rewrites this section from the runs; `--explain` adds what the selections took):", "", "```bash",
        "tasksift data build --out tasks/",
        f"TASKSIFT_THREADS=2 python benchmarks/general.py --runs runs/compare --seeds {args.seeds} --explain", "```",
        "",
        "Raw files: `docs/results/general/`. Columns after the fifth: each task's accuracy, the mean over the "
        "row's seeds.", "", body, "", *_raw_text("selections.md"), *_raw_text("reading.md")])


def _raw_text(name: str) -> list[str]:
    """A committed text of the raw folder, kept when the table is rewritten: ``selections.md`` (written by
    ``--explain``) and ``reading.md`` (written by hand as the rows come in)."""
    path = RAW / name
    return [path.read_text(encoding="utf-8").strip(), ""] if path.is_file() else []


def effective_rank(rows: np.ndarray) -> float:
    """``exp`` of the entropy of the normalised squared singular values of ``rows``: the number of equally strong
    directions that would spread the same energy (k for k orthogonal rows of equal norm, 1 for parallel rows)."""
    energy = np.linalg.svd(np.asarray(rows, dtype=np.float64), compute_uv=False) ** 2
    p = energy[energy > 0] / energy.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def mean_cosine(rows: np.ndarray) -> float:
    """Mean cosine over the distinct pairs of ``rows`` (zero rows count as cosine 0)."""
    x = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    unit = np.divide(x, norms[:, None], out=np.zeros_like(x), where=norms[:, None] > 0)
    c = unit @ unit.T
    n = len(x)
    return float((c.sum() - np.trace(c)) / (n * (n - 1))) if n > 1 else 0.0


def task_profile(grads: np.ndarray, tasks: np.ndarray, lengths: np.ndarray, sample: int = PROFILE_SAMPLE,
                 seed: int = 0) -> dict[str, dict[str, float]]:
    """Per task of the pool: share, median length, median gradient norm, and the mean cosine and effective rank
    of up to ``sample`` of its gradients (drawn with ``seed``)."""
    norms = np.linalg.norm(grads, axis=1)
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for task in sorted(set(tasks.tolist())):
        rows = np.flatnonzero(tasks == task)
        drawn = np.sort(rng.choice(rows, min(sample, len(rows)), replace=False))
        out[task] = {"share": len(rows) / len(tasks), "length": float(np.median(lengths[rows])),
                     "norm": float(np.median(norms[rows])), "cosine": mean_cosine(grads[drawn]),
                     "rank": effective_rank(grads[drawn]), "sampled": len(drawn)}
    return out


def selection_profile(picks: np.ndarray, conflicts: list[float], norms: np.ndarray, tasks: np.ndarray,
                      lengths: np.ndarray) -> dict[str, Any]:
    """What one selection took: each task's share of the picks, the picks' median length, the median of their
    gradient norms' percentiles in the pool (the share of the pool with a smaller norm), and the picks with a
    conflict penalty above zero."""
    order = np.sort(norms)
    percentile = np.searchsorted(order, norms[picks], side="left") / len(norms)
    names = sorted(set(tasks.tolist()))
    return {"picks": len(picks), "share": {t: float(np.mean(tasks[picks] == t)) for t in names},
            "length": float(np.median(lengths[picks])), "norm_percentile": float(np.median(percentile)),
            "conflicts": int(sum(c > 0 for c in conflicts))}


def gradient_summary(pool_path: Path, template: str, tasks: np.ndarray, lengths: np.ndarray,
                     grads: np.ndarray | None, stored: Path | None) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
    """``(norms, task profile)`` of the pool's gradients: from ``grads`` when given; else from ``stored`` (a
    JSON file this writes) when it was made from the same pool; else from the gradients in the feature cache
    (computed there if missing: hours on a CPU), saved to ``stored``. So the explanation of a later seed's
    selections needs neither the cache nor the hours on a fresh machine."""
    import hashlib

    digest = hashlib.sha256(pool_path.read_bytes()).hexdigest()
    if grads is None and stored is not None and stored.is_file():
        saved = json.loads(stored.read_text(encoding="utf-8"))
        if saved.get("pool_sha256") == digest and len(saved.get("norms", [])) == len(tasks):
            return np.asarray(saved["norms"], dtype=np.float64), saved["profile"]
    if grads is None:
        grads = pool_gradients(pool_path, template)
    if len(grads) != len(tasks):
        raise SystemExit(f"general.py: error: {len(grads)} gradient rows for {len(tasks)} pool records")
    norms = np.linalg.norm(grads, axis=1)
    prof = task_profile(grads, tasks, lengths)
    if stored is not None:
        from tasksift.util.io import write_text_atomic

        summary = {"pool_sha256": digest, "features": "SmolLM2 LoRA gradients, the gradient selectors' defaults",
                   "profile": prof, "norms": [round(float(v), 4) for v in norms]}
        write_text_atomic(stored, json.dumps(summary, separators=(",", ":")) + "\n")
    return norms, prof


def explain(task_dir: Path, runs: Path, seeds: int, grads: np.ndarray | None = None,
            stored: Path | None = None) -> str:
    """The markdown of ``--explain`` (see the module docstring); ``grads`` defaults to the pool's SmolLM2
    gradients, read through ``stored`` (:func:`gradient_summary`)."""
    import pyarrow.parquet as pq

    spec = json.loads((task_dir / "task.json").read_text(encoding="utf-8"))
    pool_path = (task_dir / spec["pool"]).resolve()
    records = [json.loads(line) for line in pool_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    tasks = np.array([r.get("task", "") for r in records])
    lengths = np.array([len(r.get("input", "")) + len(r.get("output", "")) for r in records], dtype=np.float64)
    norms, prof = gradient_summary(pool_path, spec["text_template"], tasks, lengths, grads, stored)
    names = list(prof)
    lines = ["**What the selections took** (`--explain`): the pool's SmolLM2 gradients, as the gradient rows read "
             "them before any proxy step (spice re-reads each window from its stepped proxy, so its norm percentiles "
             "here are those of the unstepped proxy). Length: input and output, in characters.",
             "", "| pool task | share | median length (chars) | median gradient norm | mean cosine | "
             f"effective rank of {PROFILE_SAMPLE} |", "|---|---|---|---|---|---|"]
    lines += [f"| {t} | {p['share']:.0%} | {p['length']:.0f} | {p['norm']:.2f} | {p['cosine']:+.3f} | "
              f"{p['rank']:.1f} |" for t, p in prof.items()]
    lines += ["", "| row | seed | " + " | ".join(names) + " | median length | median norm percentile | "
              "picks with a conflict |", "|---|---|" + "---|" * (len(names) + 3)]
    for row, (method, _) in ROWS.items():
        for seed in range(seeds):
            path = row_dir(runs, row) / method / f"seed-{seed}" / "selection.parquet"
            if not path.is_file():
                continue
            table_ = pq.read_table(path).to_pydict()
            conflicts = [float(json.loads(r or "{}").get("conflict") or 0.0) for r in table_.get("reason", [])]
            sel = selection_profile(np.asarray(table_["row"], dtype=np.int64), conflicts, norms, tasks, lengths)
            conflict = f"{sel['conflicts']} of {sel['picks']}" if method in ("spice", "fishersft") else ""
            lines.append(f"| {row} | {seed} | " + " | ".join(f"{sel['share'][t]:.0%}" for t in names)
                         + f" | {sel['length']:.0f} | {sel['norm_percentile']:.2f} | {conflict} |")
    return "\n".join(lines)


def pool_gradients(pool: Path, template: str) -> np.ndarray:
    """The pool's gradient features with the gradient selectors' defaults (``tasksift gradients``; read from the
    feature cache, computed there if missing)."""
    import tempfile

    from tasksift.cli.gradients import gradients_command

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pool.npy"
        gradients_command(input_path=pool, template=template, out=out)
        return np.load(out)


def copy_raw(task_dir: Path, runs: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from comparison import same_but_call_time

    pairs = [(p, RAW / "baselines" / p.parent.name / p.name) for p in task_dir.glob("baselines/*/eval.json")]
    for row, (method, _) in ROWS.items():
        folder = row_dir(runs, row)
        pairs += [(p, RAW / folder.name / p.relative_to(folder)) for f in RUN_FILES
                  for p in folder.glob(f"{method}/seed-*/{f}")]
    for src, dest in pairs:
        if not same_but_call_time(src, dest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)


def restore(task_dir: Path, runs: Path) -> int:
    copied = 0
    for src in sorted(RAW.rglob("*")):
        if not src.is_file():
            continue
        rel = src.relative_to(RAW)
        dst = task_dir / rel if rel.parts[0] == "baselines" else runs / rel
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            copied += 1
    return copied


def report(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results_doc import write_section

    rows = collect(args.task, args.runs, args.seeds)
    tasks = sorted(json.loads((args.task / "task.json").read_text(encoding="utf-8"))["counts"]["tasks"])
    if not args.cut_down:
        copy_raw(args.task, args.runs)
        write_section(args.doc, HEADING, markdown(table(rows, tasks, args.seeds) if rows else "No runs yet.", args))
    return rows


def cut_down(task_dir: Path, out: Path, n_pool: int) -> Path:
    """A copy of the general task with the first ``n_pool`` pool records, its target, and 2 test items per task."""
    spec = json.loads((task_dir / "task.json").read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    pool = (task_dir / spec["pool"]).read_text(encoding="utf-8").splitlines()[:n_pool]
    (out / "pool.jsonl").write_text("\n".join(pool) + "\n", encoding="utf-8")
    kept: dict[str, list[str]] = {}
    for name in ("target", "test"):
        seen: dict[str, int] = {}
        kept[name] = []
        for line in (task_dir / spec[name]).read_text(encoding="utf-8").splitlines():
            task = json.loads(line)["task"]
            if seen.get(task, 0) < 2:
                seen[task] = seen.get(task, 0) + 1
                kept[name].append(line)
        (out / f"{name}.jsonl").write_text("\n".join(kept[name]) + "\n", encoding="utf-8")
    test = kept["test"]
    counts = {**spec["counts"], "pool": len(pool), "test": len(test), "tasks": seen}
    (out / "task.json").write_text(json.dumps({**spec, "pool": "pool.jsonl", "target": "target.jsonl",
                                               "test": "test.jsonl", "counts": counts}), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", type=Path, default=Path("tasks/instruction/general"))
    parser.add_argument("--runs", type=Path, default=Path("runs/compare"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", default="10%")
    parser.add_argument("--no-full", dest="full", action="store_false")
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--restore", action="store_true")
    parser.add_argument("--rows", nargs="+", choices=[*ROWS, FULL], default=[*ROWS, FULL], metavar="ROW",
                        help=f"the rows to run, in the table's order, the full pool last (default: all of "
                             f"{', '.join([*ROWS, FULL])})")
    parser.add_argument("--cut-down", type=int, default=0, metavar="N",
                        help="a check on N pool records, 1 seed, 8 steps, no full pool, no doc")
    parser.add_argument("--explain", action="store_true",
                        help="write what the selections took (docs/results/general/selections.md)")
    args = parser.parse_args(argv)
    train: dict[str, Any] = {"epochs": 1, "settings": {"max_length": 128}}
    if args.cut_down:
        args.task = cut_down(args.task, args.runs / "cut-down-task", args.cut_down)
        args.seeds, args.full = 1, False
        train = {"max_steps": 8, "settings": {"max_length": 64}}
    if args.restore:
        print(f"{restore(args.task, args.runs)} committed files put back")
    if not args.report_only:
        from tasksift.eval import evaluate

        evaluate(args.task, "none", seeds=1, progress=True, **train)  # scoring only: first, it is cheap
        for seeds in range(1, args.seeds + 1):
            for row in (name for name in ROWS if name in args.rows):
                run_row(args.task, args.runs, row, seeds, args.budget, train)
                report(args)
        if args.full and FULL in args.rows:
            evaluate(args.task, "full", seeds=1, progress=True, **train)
    if args.explain:
        text = explain(args.task, args.runs, args.seeds, stored=None if args.cut_down else RAW / GRADIENT_SUMMARY)
        print(text)
        if not args.cut_down:
            from tasksift.util.io import write_text_atomic

            write_text_atomic(RAW / "selections.md", text + "\n")
    return report(args)


if __name__ == "__main__":
    main()
