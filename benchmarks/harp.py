"""HARP against its exhaustive reference on instruction tasks: accuracy, gain over random, number of probes.

    python benchmarks/harp.py [--tasks tasks/instruction/rt_sentiment,...] [--budget 2%] [--seeds 3]
                              [--runs runs/compare] [--epochs 1] [--max-steps N] [--max-length 128]

For every task (in order), seed and method (``harp-exhaustive`` first: its probes fill the cache that
``harp-c`` and ``harp-e`` then read, as they probe leaves of the same hierarchy; then ``harp-c``, ``harp-e``,
``tsds``, ``random``), the selection is made with :func:`tasksift.select` and evaluated with the harness
(:func:`tasksift.eval.harness.evaluate`: SmolLM2-135M-Instruct + LoRA, option log-likelihood accuracy on the
task's 300 held-out test items) with the same training settings and that seed. Every step resumes: a finished
selection (its ``manifest.json``) or evaluation (its ``eval.json``) is not redone, nor is a finished probe.

The defaults are the instruction track's (``benchmarks/comparison.py --track instruction``): 2% of the pool, one
epoch, pairs cut to 128 tokens, and the same run layout (``<runs>/<task>/<method>/seed-<k>``). With the same
``--runs`` the tsds and random rows are that comparison's runs, read back, not trained again.

HARP settings (``HARP_PARAMS``) are chosen to fit a 2-core CPU: leaves of about 500 examples, 8 leaves per
parent (one probe per parent: about 8x fewer probes than exhaustive), probes of 8 LoRA steps of 8 pairs at
learning rate 1e-3 cut to 96 tokens, scored on the 50 target examples (2 steps at 3e-4 moved the proxy score
less than its bootstrap noise); ``probe_seed=0`` so the three seeds share the hierarchy and the
probes (HARP's selection is then the same for every seed and only the training seed varies).

``--probe key=value`` (repeatable) overrides a HARP setting (e.g. ``--probe probe_steps=8 --probe probe_lr=1e-3``);
a selection made with other settings than the current ones is made again. Before any evaluation of a task, the
exhaustive probes are checked: if the spread of measured leaf effects (sd between leaves) does not exceed the
bootstrap noise of one probe in any domain, the probes carry no signal and the run stops there with both
figures (``--ignore-signal`` evaluates anyway). ``--signal-only`` runs the exhaustive probes of every task and
prints the check, evaluating nothing: the cheap first step when trying probe settings.

Results: ``benchmarks/results/harp.json`` and the section ``## HARP: probes against exhaustive`` of
``docs/results.md``, both rewritten after every finished evaluation (marked partial until all are done).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "harp.json"
DOC = ROOT / "docs" / "results.md"
HEADING = "## HARP: probes against exhaustive"
METHODS = ("harp-exhaustive", "harp-c", "harp-e", "tsds", "random")
HARP_PARAMS = {"leaf_size": 500, "leaves_per_parent": 8, "parents_per_region": 8, "probe_steps": 8,
               "probe_lr": 1e-3, "probe_batch_size": 8, "probe_max_length": 96, "probe_seed": 0}
DEFAULT_TASKS = ("rt_sentiment", "wordnet_definition", "chatterbot_answer")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tasksift.api import select
    from tasksift.eval.compare import _text_view
    from tasksift.eval.harness import evaluate
    from tasksift.eval.tasks import load_task

    settings = {"max_length": args.max_length}
    harp_params = {**HARP_PARAMS, **args.probe}
    out: dict[str, Any] = {"budget": args.budget, "seeds": list(range(args.seeds)), "methods": list(METHODS),
                           "harp_params": harp_params,
                           "training": {"epochs": args.epochs, "max_steps": args.max_steps, "batch_size": 8,
                                        **settings},
                           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                       "threads": os.environ.get("TASKSIFT_THREADS")},
                           "runs_dir": str(args.runs), "planned_tasks": [Path(t).name for t in args.tasks],
                           "tasks": {}, "complete": False}
    if args.notes is not None:
        out["notes"] = args.notes.read_text(encoding="utf-8").strip()
    planned = len(args.tasks) * (1 + args.seeds * len(METHODS))
    done = 0
    for task_dir in args.tasks:
        task = load_task(task_dir)
        view = _text_view(task.spec, task.kind)

        def selection(method: str, seed: int, run_dir: Path, task: Any = task, view: Any = view) -> dict[str, Any]:
            """The run's manifest, selecting first when there is none or it was made with other settings."""
            params = harp_params if method.startswith("harp") else {}
            path = run_dir / "manifest.json"
            made = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
            if made is None or any(made.get("params", {}).get(k) != v for k, v in params.items()):
                select(task.pool.path, task.path("target", "target.jsonl"), method=method,
                       budget=args.budget, seed=seed, out=run_dir, **view, **params)
            return json.loads(path.read_text(encoding="utf-8"))

        signal = probe_signal(selection("harp-exhaustive", 0, args.runs / task.name / "harp-exhaustive" / "seed-0"))
        print(f"{task.name}: probe signal {signal['verdict']}: spread of leaf effects (sd) "
              f"{', '.join(f'{v:.6f}' for v in signal['effect_sd'])} against the bootstrap noise of one probe "
              f"{', '.join(f'{v:.6f}' for v in signal['noise_sd'])} ({signal['leaves']} leaves)", flush=True)
        if args.signal_only:
            continue
        if not signal["ok"] and not args.ignore_signal:
            raise SystemExit(f"{task.name}: the probes carry no signal at these settings; stronger probes first "
                             "(--probe probe_steps=N --probe probe_lr=X), or --ignore-signal to evaluate anyway")
        entry: dict[str, Any] = {"none": None, "methods": {m: {"runs": {}} for m in METHODS}}
        out["tasks"][task.name] = entry
        res = evaluate(task.dir, "none", seeds=1, epochs=args.epochs, max_steps=args.max_steps, settings=settings,
                       out=args.runs / task.name / "none", progress=False)
        entry["none"] = res["mean"]["accuracy"]
        done += 1
        write(out, done, planned)
        for seed in range(args.seeds):
            for method in METHODS:
                run_dir = args.runs / task.name / method / f"seed-{seed}"
                t0 = time.perf_counter()
                manifest = selection(method, seed, run_dir)
                select_seconds = time.perf_counter() - t0
                res = evaluate(task.dir, run_dir, seeds=[seed], epochs=args.epochs, max_steps=args.max_steps,
                               settings=settings,
                               progress=False)
                harp = manifest.get("harp", {})
                entry["methods"][method]["runs"][str(seed)] = {
                    "accuracy": res["runs"][str(seed)]["metrics"]["accuracy"],
                    "probes": harp.get("probes", 0),
                    "leaves": (harp.get("hierarchy") or {}).get("leaves"),
                    "probes_trained_now": harp.get("probes_trained_now"),
                    "select_seconds": round(select_seconds, 1),
                    "stage_seconds": manifest.get("timings"),
                    "eval_seconds": res["runs"][str(seed)]["seconds"],
                }
                done += 1
                print(f"[{done}/{planned}] {task.name} {method} seed {seed}: "
                      f"accuracy {entry['methods'][method]['runs'][str(seed)]['accuracy']:.4f}", flush=True)
                write(out, done, planned)
    out["complete"] = True
    write(out, done, planned)
    return out


def _typed(value: str) -> Any:
    """``"8"`` -> 8, ``"1e-3"`` -> 0.001, anything else as it is (how the selector's manifest stores them)."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def probe_signal(manifest: dict[str, Any]) -> dict[str, Any]:
    """Whether an exhaustive run's probes measure anything: per domain, the spread of the leaf effects (sd between
    leaves, the empirical-Bayes ``tau2``) against the bootstrap noise of one probe; ``ok`` if it exceeds it in
    some domain."""
    harp = manifest["harp"]
    effect_sd = [max(float(v), 0.0) ** 0.5 for v in harp["tau2"]]
    noise_sd = [max(float(v), 0.0) ** 0.5 for v in harp["noise"]]
    ok = any(e > n for e, n in zip(effect_sd, noise_sd, strict=True))
    return {"effect_sd": effect_sd, "noise_sd": noise_sd, "ok": ok, "leaves": harp["hierarchy"]["leaves"],
            "verdict": "present" if ok else "ABSENT"}


def summarise(out: dict[str, Any]) -> dict[str, Any]:
    """Per task and method: mean accuracy and answer loss, gains over random (seed by seed), retention against
    exhaustive. A run recorded without its answer loss gets it from its ``eval.json``."""
    runs_dir = Path(out["runs_dir"])
    methods = out.get("methods") or list(METHODS)
    for task, entry in out["tasks"].items():
        runs = {m: entry["methods"][m]["runs"] for m in methods}
        for m in methods:
            for s, run in runs[m].items():
                if "answer_loss" not in run:
                    path = runs_dir / task / m / f"seed-{s}" / "eval.json"
                    if path.is_file():
                        run["answer_loss"] = json.loads(path.read_text())["runs"][s]["metrics"]["answer_loss"]
        common = sorted(set.intersection(*(set(r) for r in runs.values())), key=int) if runs else []
        for m in methods:
            row = entry["methods"][m]
            seeds = sorted(runs[m], key=int)
            row["seeds_done"] = len(seeds)
            row["probes"] = max((r["probes"] for r in runs[m].values()), default=None)
            for key, name in (("accuracy", "mean"), ("answer_loss", "mean_loss")):
                values = [runs[m][s][key] for s in seeds if key in runs[m][s]]
                row[name] = sum(values) / len(values) if values else None
            if common:
                gain = [runs[m][s]["accuracy"] - runs["random"][s]["accuracy"] for s in common]
                row["gain_over_random"] = sum(gain) / len(gain)
                loss_gain = [runs["random"][s]["answer_loss"] - runs[m][s]["answer_loss"] for s in common
                             if "answer_loss" in runs[m][s] and "answer_loss" in runs["random"][s]]
                row["loss_gain_over_random"] = sum(loss_gain) / len(loss_gain) if loss_gain else None
        ex = entry["methods"]["harp-exhaustive"]
        for m in ("harp-c", "harp-e"):
            row = entry["methods"][m]
            for gain_key, ret_key in (("gain_over_random", "retention"), ("loss_gain_over_random", "loss_retention")):
                g, e = row.get(gain_key), ex.get(gain_key)
                # a retention of a gain that is not there (exhaustive at or below random) means nothing
                row[ret_key] = (g / e) if (g is not None and e is not None and e > 0) else None
            p, pe = row["probes"], ex["probes"]
            row["probe_ratio"] = (pe / p) if p and pe else None
        entry["seeds_common"] = len(common)
    return out


def markdown(out: dict[str, Any], done: int, planned: int) -> str:
    state = "complete" if out["complete"] else f"PARTIAL: {done} of {planned} evaluations finished"
    t = out["training"]
    length = (f"{t['max_steps']} steps" if t.get("max_steps") else f"{t.get('epochs') or 1} epoch(s) over each "
              "selection")
    lines = [HEADING, "",
             f"Status: {state}. Budget {out['budget']} of the 14,968-row instruction pool; seeds "
             f"{out['seeds']}; every selection trained the same way (SmolLM2-135M-Instruct + LoRA, {length}, "
             f"batches of {t['batch_size']} pairs, {t['max_length']} tokens) and scored on the "
             "task's 300 held-out test items (option log-likelihood accuracy). HARP settings: "
             + ", ".join(f"`{k}={v}`" for k, v in out["harp_params"].items())
             + ". Gain = accuracy minus random's with the same seed (loss reduction: random's answer loss "
               "minus the method's), averaged over the seeds all methods have; retention = HARP's gain / "
               "harp-exhaustive's gain, left empty where exhaustive does not beat random. Command: "
               "`TASKSIFT_THREADS=1 python benchmarks/harp.py`; raw numbers in `benchmarks/results/harp.json`.", ""]
    methods = out.get("methods") or list(METHODS)
    if not out["complete"]:
        left = []
        for task in out.get("planned_tasks", []):
            entry = out["tasks"].get(task)
            if entry is None:
                left.append(f"{task}: everything (its probes and {len(out['seeds']) * len(methods)} evaluations)")
                continue
            missing = [f"{m} seed {s}" for s in out["seeds"] for m in methods
                       if str(s) not in entry["methods"][m]["runs"]]
            if missing:
                left.append(f"{task}: " + ", ".join(missing))
        if left:
            lines += ["Left to run (the same command resumes; finished probes and evaluations are kept): "
                      + "; ".join(left) + ".", ""]
    lines += task_tables(out)
    if out.get("notes"):
        lines += [out["notes"], ""]
    return "\n".join(lines).rstrip() + "\n"


def task_tables(out: dict[str, Any]) -> list[str]:
    """Per task: the table of methods (accuracy, gains, retention, probes) and the probe-quality figures."""
    methods = out.get("methods") or list(METHODS)
    lines: list[str] = []
    for name, entry in out["tasks"].items():
        none = entry.get("none")
        lines += [f"**{name}** (no finetuning: {none:.4f})" if none is not None else f"**{name}**", "",
                  "| method | seeds | accuracy (mean) | gain over random | retention of exhaustive's gain | "
                  "answer loss (mean) | loss reduction vs random | retention (loss) | probes | "
                  "probes vs exhaustive |", "|---|---|---|---|---|---|---|---|---|---|"]
        for m in methods:
            row = entry["methods"][m]
            if not row.get("seeds_done"):
                continue
            def num(value: float | None, fmt: str) -> str:
                return "" if value is None else format(value, fmt)

            def pct(value: float | None) -> str:
                return "" if value is None else f"{100 * value:.0f}%"

            ratio = row.get("probe_ratio")
            lines.append(f"| {m} | {row['seeds_done']} | {num(row['mean'], '.4f')} | "
                         f"{num(row.get('gain_over_random'), '+.4f')} | {pct(row.get('retention'))} | "
                         f"{num(row.get('mean_loss'), '.4f')} | {num(row.get('loss_gain_over_random'), '+.4f')} | "
                         f"{pct(row.get('loss_retention'))} | {row['probes'] or 0} | "
                         f"{'' if ratio is None else f'{ratio:.1f}x fewer'} |")
        quality = entry.get("estimates")
        if quality:
            sig = quality["probe_signal"]
            lines += ["", f"Probe signal (harp-exhaustive, {sig['leaves']} leaves, per-item score = probability of "
                      f"the right option): base {sig['base'][0]:.4f}, mean measured effect "
                      f"{sig['mean_effect'][0]:+.6f}, spread of effects between leaves (sd) "
                      f"{sig['effect_sd'][0]:.6f}, bootstrap noise of one probe (sd) {sig['noise_sd'][0]:.6f}; "
                      f"leaves in the best prefix: {sig['prefix_leaves']}."]
            variants = {m: q for m, q in quality.items() if m != "probe_signal"}
            if variants:
                lines += ["", "HARP's inferred effects of the leaves it did not probe against the exhaustive run's "
                          "measurements of the same leaves (seed 0):", "",
                          "| variant | unprobed leaves | Spearman | mean abs. error | spread of measured effects | "
                          "selected rows shared with exhaustive |", "|---|---|---|---|---|---|"]
            for m, q in variants.items():
                rho = "" if q["spearman"] is None else f"{q['spearman']:.2f}"
                mae = "" if q["mae"] is None else f"{q['mae']:.6f}"
                lines.append(f"| {m} | {q['unprobed_leaves']} | {rho} | {mae} | {q['measured_spread']:.6f} | "
                             f"{100 * q['selected_overlap']:.0f}% |")
        lines.append("")
    return lines


def estimate_quality(runs: Path, task: str) -> dict[str, Any] | None:
    """HARP's inferred leaf effects against the exhaustive run's measured ones (seed 0, same hierarchy).

    Needs no evaluation: the probes of ``harp-exhaustive`` measure every leaf, so HARP's estimate of each leaf it
    did not probe can be checked against a measurement. Per variant: the Spearman correlation of estimated and
    measured effects over the unprobed leaves, the mean absolute error there, and the overlap of the selected
    rows with the exhaustive run's.
    """
    import numpy as np
    import pyarrow.parquet as pq

    ex_dir = runs / task / "harp-exhaustive" / "seed-0"
    if not (ex_dir / "leaves.parquet").is_file():
        return None
    ex = pq.read_table(ex_dir / "leaves.parquet").to_pandas()
    ex_rows = set(pq.read_table(ex_dir / "selection.parquet", columns=["row"]).column("row").to_pylist())
    measured_col = next(c for c in ex.columns if c.startswith("phi_measured["))
    manifest = json.loads((ex_dir / "manifest.json").read_text(encoding="utf-8"))["harp"]
    out: dict[str, Any] = {"probe_signal": {"base": manifest["base"], "mean_effect": manifest["mu"],
                                            "effect_sd": [v ** 0.5 for v in manifest["tau2"]],
                                            "noise_sd": [v ** 0.5 for v in manifest["noise"]],
                                            "leaves": manifest["hierarchy"]["leaves"],
                                            "prefix_leaves": len(manifest["prefix_leaves"])}}
    for method in ("harp-c", "harp-e"):
        d = runs / task / method / "seed-0"
        if not (d / "leaves.parquet").is_file():
            continue
        lv = pq.read_table(d / "leaves.parquet").to_pandas()
        effect_col = next(c for c in lv.columns if c.startswith("effect["))
        if len(lv) != len(ex) or not np.array_equal(lv["size"].to_numpy(), ex["size"].to_numpy()):
            continue  # another hierarchy: not comparable leaf by leaf
        unprobed = ~lv["measured"].to_numpy()
        est, truth = lv[effect_col].to_numpy()[unprobed], ex[measured_col].to_numpy()[unprobed]
        rows = set(pq.read_table(d / "selection.parquet", columns=["row"]).column("row").to_pylist())
        out[method] = {"unprobed_leaves": int(unprobed.sum()),
                       "spearman": _rank_correlation(est, truth),
                       "mae": float(np.abs(est - truth).mean()) if unprobed.any() else None,
                       "measured_spread": float(ex[measured_col].std()),
                       "selected_overlap": len(rows & ex_rows) / max(len(ex_rows), 1)}
    return out


def _rank_correlation(est: Any, truth: Any) -> float | None:
    """Spearman's correlation of two arrays; ``None`` under 3 values or where one of them is constant."""
    import numpy as np
    from scipy.stats import spearmanr

    if len(est) < 3 or np.ptp(est) == 0 or np.ptp(truth) == 0:
        return None
    return float(spearmanr(est, truth).statistic)


def write(out: dict[str, Any], done: int, planned: int) -> None:
    from results_doc import write_section
    from tasksift.util.io import write_json_atomic

    summarise(out)
    runs = Path(out["runs_dir"])
    for task, entry in out["tasks"].items():
        entry["estimates"] = estimate_quality(runs, task)
    write_json_atomic(RESULTS, out)
    write_section(DOC, HEADING, markdown(out, done, planned))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(f"tasks/instruction/{t}" for t in DEFAULT_TASKS),
                        help="task directories, comma-separated (built by tasksift data build --out tasks/)")
    parser.add_argument("--budget", default="2%", help="as tasksift select takes it: a count or a share")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs", type=Path, default=Path("runs/compare"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None, help="cap on optimizer steps (default: none)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--notes", type=Path, default=None,
                        help="a markdown file whose text ends the section (observations on the numbers)")
    parser.add_argument("--probe", action="append", default=[], metavar="KEY=VALUE",
                        help="override a HARP setting of HARP_PARAMS (repeatable)")
    parser.add_argument("--signal-only", action="store_true",
                        help="run the exhaustive probes of every task and print the signal check; evaluate nothing")
    parser.add_argument("--ignore-signal", action="store_true", help="evaluate even when the probes carry no signal")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the results from benchmarks/results/harp.json and the runs; run nothing")
    args = parser.parse_args(argv)
    if args.report_only:
        out = json.loads(RESULTS.read_text(encoding="utf-8"))
        out.setdefault("planned_tasks", [Path(t).name for t in args.tasks.split(",") if t])
        if args.notes is not None:
            out["notes"] = args.notes.read_text(encoding="utf-8").strip()
        planned = len(args.tasks.split(",")) * (1 + len(out["seeds"]) * len(METHODS))
        done = sum(1 + sum(len(m["runs"]) for m in e["methods"].values()) for e in out["tasks"].values())
        write(out, done, max(planned, done))
        return
    from tasksift.util.params import parse_assignments

    args.probe = {k: _typed(v) for k, v in parse_assignments(args.probe, "--probe").items()}
    args.tasks = [t for t in args.tasks.split(",") if t]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    run(args)


if __name__ == "__main__":
    sys.exit(main())
