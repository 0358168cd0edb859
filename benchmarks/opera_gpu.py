"""OPERA at GPU size: FOLDOC's whole training set, no pruning against static and dynamic pruning and InfoBatch,
3 seeds, NDCG@10 against training steps; one command, at most 8 minutes on one GPU.

    python benchmarks/opera_gpu.py [--device cuda] [--task tasks/retrieval/foldoc] [--runs runs/opera-gpu]
                                   [--budget-s 470] [--results PATH] [--doc PATH]
    python benchmarks/opera_gpu.py --cpu-smoke [--task DIR] [--runs DIR] [--results PATH] [--doc PATH]

On a GPU it runs (or resumes: a finished (pruning, seed) is reused) what

    tasksift retriever train --task tasks/retrieval/foldoc --pruning none,static,dynamic,infobatch --steps 320 \\
        --seeds 3 --eval-every 40 --param batch_size=64 --param max_length=128 --param eval_batch_size=256 \\
        --device cuda --out runs/opera-gpu

runs, nothing cut: the 11,337 training pairs (11,183 queries), the 300 test queries, the 11,570-document corpus.
The CPU section (``benchmarks/opera.py``) had to cut FOLDOC to 500 training queries and 800 documents, and its
curves were flat after 20 of 80 steps, so the steps-to-match figure there says little. Here 320 steps of 64
pairs are 1.8 passes over the pairs (177 steps a pass): standard finetuning should have flattened by the end,
and half the steps (160, about one pass) is an evaluation point.

Time, an estimate to be checked on a GPU (the command prints each run's seconds; ``--budget-s`` guards it):

- a training step: about 60 ms. Basis: 2.5 s a step on one CPU thread at batch 16 and 48 tokens
  (``benchmarks/opera.py``; 3.5 to 4.4 s on the busy machine of docs/results.md), about 1,700 tokens a step.
  Here a step is 64 queries, 64 positives and 64 hard negatives cut to 128 tokens (a random batch of
  definitions almost always holds one of 128 tokens, and batches pad to their longest): about 17,000 tokens,
  10x, so about 25 s on one CPU thread. The assumption: an H100/H200 does MiniLM's 384-wide matrix work under
  bfloat16 autocast about 400x faster than one CPU thread (about 60 TFLOP/s, far below the 800 TFLOP/s these
  GPUs reach on large products; per-step launch overhead included).
- an evaluation point: about 1.5 s (11,570 documents and 300 queries encoded in length-sorted batches of 256,
  about 0.75M tokens forward only, then an exact search on the CPU).
- a run: 320 x 60 ms + 8 points x 1.5 s + loading the model, about 32 s; 12 runs about 385 s; with the start
  (imports, the base model's vectors of the 22,520 training texts, hard negatives, scoring the base model)
  about 415 s, inside 8 minutes.

``--budget-s`` (470 by default): after each finished run, the next one starts only if the longest run so far
would end inside the budget; otherwise the command writes what it has (marked partial), says so in one line and
exits with code 1. The same command resumes, keeping every finished run.

Needs on the GPU machine (nothing is downloaded): tasksift with the bundled all-MiniLM-L6-v2, and
``tasks/retrieval/foldoc`` (``tasksift data build --out tasks/``).

Without a GPU the command exits with code 2 and one line, writing nothing. ``--cpu-smoke`` runs the same path on
the CPU at a cut-down size (48 training queries, 16 test queries over 120 documents, 4 steps scored every 2,
2 seeds, batches of 4 at 32 tokens): how it is tested on a machine without a GPU.

Results: ``benchmarks/results/opera_gpu.json`` and the section ``## OPERA at GPU size`` of ``docs/results.md``
(other sections are left as they are); with ``--cpu-smoke``, ``benchmarks/results/opera_gpu_smoke.json`` and
``.md`` instead, never docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "results.md"
HEADING = "## OPERA at GPU size"
PRUNING = ("none", "static", "dynamic", "infobatch")
SIZES: dict[str, dict[str, Any]] = {
    "gpu": {"steps": 320, "seeds": 3, "eval_every": 40, "train_queries": None, "test_queries": None,
            "corpus": None, "settings": {"batch_size": "64", "max_length": "128", "eval_batch_size": "256"}},
    "cpu-smoke": {"steps": 4, "seeds": 2, "eval_every": 2, "train_queries": 48, "test_queries": 16, "corpus": 120,
                  "settings": {"batch_size": "4", "max_length": "32", "eval_batch_size": "32"}},
}
COMMAND = "python benchmarks/opera_gpu.py"
EQUIVALENT = ("tasksift retriever train --task tasks/retrieval/foldoc --pruning none,static,dynamic,infobatch "
              "--steps 320 --seeds 3 --eval-every 40 --param batch_size=64 --param max_length=128 "
              "--param eval_batch_size=256 --device cuda --out runs/opera-gpu")


def run(task: str, runs: Path, size: dict[str, Any], where: Any, budget: Any) -> tuple[dict[str, Any], bool]:
    """Every (pruning, seed) of ``size`` not finished yet, stopping between runs when the budget is spent; the
    summary (partial when stopped) and whether everything is done."""
    from preset_gpu import OutOfTime
    from tasksift.eval.pruning import summarize, train_with_pruning

    started = []

    def log(message: str) -> None:  # called once the base model is scored, then after every finished run
        print(message, flush=True)
        if started:
            budget.done("run")
        started.append(message)
        budget.check("run")

    cfg = {k: v for k, v in size.items() if k != "settings"}
    try:
        summary = train_with_pruning(task, ",".join(PRUNING), out=runs, progress=False, log=log, device=where,
                                     settings=size["settings"], **cfg)
        return summary, True
    except OutOfTime as stop:
        print(f"stopped: {stop}; the same command resumes", flush=True)
    base = json.loads((runs / "base.json").read_text(encoding="utf-8"))
    return summarize(runs, PRUNING, size["seeds"], base), False


def verdict(summary: dict[str, Any]) -> dict[str, Any]:
    """The reading rule (docstring of :func:`reading_rule`) applied to the mean curves."""
    from tasksift.eval.pruning import steps_to_reach

    curves, rows = summary.get("curves", {}), summary.get("rows", {})
    if "none" not in curves or "dynamic" not in curves:
        return {"claim": "not read", "why": "no pruning or dynamic pruning has no finished run yet"}
    none = curves["none"]
    steps = none[-1]["step"]
    final = none[-1]["metrics"]["ndcg@10"]
    noise = rows["none"]["std"].get("ndcg@10") or 0.0

    def at_or_before(curve: list[dict[str, Any]], step: float) -> dict[str, Any]:
        return [p for p in curve if p["step"] <= step][-1]

    half, late = at_or_before(none, steps / 2), at_or_before(none, 3 * steps / 4)
    out = {"steps": steps, "target_ndcg@10": final, "seed_std": noise, "half_step": half["step"],
           "none_at_half": half["metrics"]["ndcg@10"], "late_step": late["step"],
           "rise_over_last_quarter": final - late["metrics"]["ndcg@10"],
           "dynamic_reaches_at": steps_to_reach(curves["dynamic"], final),
           "dynamic_at_half": at_or_before(curves["dynamic"], half["step"])["metrics"]["ndcg@10"]}
    out["flattened"] = out["rise_over_last_quarter"] <= noise
    out["room_at_half"] = final - out["none_at_half"] > noise
    reached = out["dynamic_reaches_at"]
    if not out["flattened"]:
        out["claim"], out["why"] = "not read", (
            f"no pruning still rose by {out['rise_over_last_quarter']:+.4f} over the last quarter of the steps, "
            f"more than one seed std ({noise:.4f}): too few steps at this size")
    elif not out["room_at_half"]:
        out["claim"], out["why"] = "not read", (
            f"no pruning itself was within one seed std ({noise:.4f}) of its final NDCG@10 by step {half['step']} "
            f"({out['none_at_half']:.4f} against {final:.4f}): reaching it there shows no speed-up")
    elif reached is not None and reached <= half["step"]:
        out["claim"], out["why"] = "holds", (
            f"dynamic pruning's mean curve reaches no pruning's final NDCG@10 ({final:.4f}) at step {reached} of "
            f"{steps}, while no pruning was at {out['none_at_half']:.4f} at step {half['step']}")
    else:
        out["claim"], out["why"] = "does not hold", (
            f"dynamic pruning's mean curve is at {out['dynamic_at_half']:.4f} at step {half['step']}, below no "
            f"pruning's final {final:.4f}; it reaches it "
            + (f"at step {reached}" if reached is not None else "at no evaluation step"))
    return out


def reading_rule(steps: str = "T") -> str:
    """When the paper's claim (dynamic pruning matches standard finetuning in under half the steps) holds."""
    return (f"Reading rule, fixed before the run: with T = {steps} steps and the NDCG@10 means over the seeds, "
            "(1) no pruning's curve must have flattened: its rise from the last evaluation point at or before 3T/4 "
            "to step T is at most one seed std of its final NDCG@10, else the run had too few steps and the "
            "claim is not read; (2) no pruning must still have had room at T/2: its value there more than one "
            "seed std below its final, else reaching that final at T/2 shows no speed-up and the claim is not "
            "read; (3) the claim holds when dynamic pruning's mean curve reaches no pruning's final NDCG@10 at an "
            "evaluation step at or before T/2, and does not hold otherwise. Static pruning and InfoBatch are read "
            "by their final NDCG@10 and Recall@20 against no pruning's, inside or outside one seed std.")


def finals(summary: dict[str, Any]) -> str:
    """Each pruning's final NDCG@10 and Recall@20 against no pruning's, against the spread over seeds."""
    rows = summary.get("rows", {})
    if "none" not in rows:
        return ""
    ref, parts = rows["none"], []
    for name in PRUNING[1:]:
        if name not in rows:
            continue
        cells = []
        for metric, label in (("ndcg@10", "NDCG@10"), ("recall@20", "Recall@20")):
            delta = rows[name]["mean"][metric] - ref["mean"][metric]
            spread = max(ref["std"].get(metric) or 0.0, rows[name]["std"].get(metric) or 0.0)
            cells.append(f"{label} {delta:+.4f} ({'within' if abs(delta) <= spread else 'outside'} one seed std, "
                         f"{spread:.4f})")
        parts.append(f"{name}: " + ", ".join(cells))
    return "Against no pruning, final values: " + "; ".join(parts) + "." if parts else ""


def section(report: dict[str, Any]) -> str:
    from opera import curve_table
    from tasksift.eval.pruning import markdown_summary

    summary, size, v = report["summary"], report["sizes"], report["verdict"]
    state = ("complete" if report["complete"] else
             f"PARTIAL: {report['runs_done']} of {report['runs_planned']} runs finished; `{COMMAND}` resumes")
    dev = report["device"]
    where = dev.get("name", dev["device"])
    sizes = summary.get("sizes") or {}
    cut = (f"{sizes['train_queries']:,} training queries ({sizes['train_pairs']:,} pairs), "
           f"{sizes['test_queries']} test queries over {sizes['corpus']:,} documents" if sizes else
           f"training queries {size['train_queries'] or 'all'}, test queries {size['test_queries'] or 'all'}, "
           f"corpus {size['corpus'] or 'whole'}")
    text = f"""{HEADING}

Status: {state} ({report['mode']}, {where}, {report['seconds']:.0f} s). Retrieval task
`{summary.get('task', {}).get('name', report['task'])}` (FOLDOC term -> definition on a GPU run), {cut};
all-MiniLM-L6-v2 finetuned for {size['steps']} steps per run, batches of {size['settings']['batch_size']} pairs
(one mined hard negative each) at {size['settings']['max_length']} tokens, {size['seeds']} seeds, scored every
{size['eval_every']} steps; the other settings as in the CPU section (docs/methods.md for the prunings). Final
metrics are mean ± sample std over the seeds.

{markdown_summary(summary) if len(summary.get('rows', {})) > 1 else ''}
{finals(summary)}

Dynamic pruning against standard finetuning: **{v['claim']}**: {v['why']}.

{reading_rule(str(size['steps']))}

NDCG@10 against training steps (mean over seeds; step 0 is the base model):

{curve_table(summary) if summary.get('curves') else ''}
Command: `{COMMAND}` on one GPU (equivalent: `{EQUIVALENT}`); raw numbers in
`benchmarks/results/opera_gpu.json`. Torch {report['torch']}, Python {report['python']}.
"""
    return text


def waiting_section() -> str:
    """The section as it stands until a GPU runs the command."""
    return f"""{HEADING}

Status: **waits for a GPU**: prepared and tested on the CPU at a cut-down size (`{COMMAND} --cpu-smoke`), not
run yet at this size. Command, on one GPU, at most 8 minutes (estimated 415 s from the CPU timings, basis in the
script's docstring; a time budget stops it between runs, and the same command resumes):

    {COMMAND}

which runs `{EQUIVALENT}` and rewrites this section and `benchmarks/results/opera_gpu.json`. It needs, on the
GPU machine, tasksift installed with the bundled all-MiniLM-L6-v2 and `tasks/` built by `tasksift data build
--out tasks/`: nothing is downloaded.

What it will measure: FOLDOC term -> definition retrieval with nothing cut (the 11,337 training pairs of
11,183 queries, the 300 test queries over the 11,570-document corpus); all-MiniLM-L6-v2 finetuned with
InfoNCE (in-batch negatives and one mined hard negative per query) for 320 steps of 64 pairs at 128 tokens,
1.8 passes over the pairs, once per pruning (none, static, dynamic, InfoBatch) and seed (0, 1, 2); NDCG@10,
Recall@10/20/100 every 40 steps, so that half the steps (160) is an evaluation point. The CPU section
(Retrieval: pruning while finetuning a bi-encoder) had to cut the task to 500 training queries and 800
documents, and its curves were flat after 20 of 80 steps.

{reading_rule("320")}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="the GPU: cuda (default) or cuda:N")
    parser.add_argument("--cpu-smoke", action="store_true", help="the same path on the CPU at a cut-down size")
    parser.add_argument("--task", default="tasks/retrieval/foldoc", help="the FOLDOC retrieval task directory")
    parser.add_argument("--runs", type=Path, default=None, help="run folder (default runs/opera-gpu[-smoke])")
    parser.add_argument("--budget-s", type=float, default=470.0, help="seconds for the whole command")
    parser.add_argument("--results", type=Path, default=None, help="the JSON written (default under "
                        "benchmarks/results/)")
    parser.add_argument("--doc", type=Path, default=None, help="the markdown file whose section is rewritten "
                        "(default docs/results.md; with --cpu-smoke, the results file with .md)")
    args = parser.parse_args(argv)
    from preset_gpu import DONE, PARTIAL, REFUSED, Budget, device_or_refuse

    where = device_or_refuse("opera_gpu.py", args.device, args.cpu_smoke)
    if where is None:
        return REFUSED
    import torch

    from results_doc import write_section
    from tasksift.util.device import device_info
    from tasksift.util.io import write_json_atomic

    mode = "cpu-smoke" if args.cpu_smoke else "gpu"
    suffix = "_smoke" if args.cpu_smoke else ""
    results = args.results or RESULTS / f"opera_gpu{suffix}.json"
    doc = args.doc or (results.with_suffix(".md") if args.cpu_smoke else DOC)
    runs = args.runs or Path(f"runs/opera-gpu{suffix.replace('_', '-')}")
    size = SIZES[mode]
    t0 = time.monotonic()
    summary, complete = run(args.task, runs, size, where, Budget(args.budget_s))
    done = sum(row["seeds"] for name, row in summary["rows"].items() if name != "base")
    report = {"benchmark": "opera-gpu", "mode": mode, "complete": complete, "runs_done": done,
              "runs_planned": len(PRUNING) * size["seeds"], "budget_s": args.budget_s,
              "seconds": round(time.monotonic() - t0, 1), "device": device_info(where), "sizes": size,
              "task": str(args.task), "runs_dir": str(runs), "torch": torch.__version__,
              "python": platform.python_version(), "summary": summary, "verdict": verdict(summary)}
    write_json_atomic(results, report)
    write_section(doc, HEADING, section(report))
    print(f"{'done' if complete else 'PARTIAL'}: {done} of {report['runs_planned']} runs in {report['seconds']:.0f}"
          f" s; dynamic pruning: {report['verdict']['claim']}; written: {results}, {doc}")
    return DONE if complete else PARTIAL


if __name__ == "__main__":
    sys.exit(main())
