"""The report of a ``tasksift retriever train`` directory (its ``summary.json``): the curves of NDCG@10 and
Recall@20 against training steps for each pruning (mean over seeds, with a band of one standard deviation), the
base model as step 0, and the results table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tasksift.report.page import document, escape, img, png, pyplot, table
from tasksift.report.run import page_path, write_page
from tasksift.util.errors import InputError

_LABELS = {"none": "no pruning", "static": "static (OPERA-SP)", "dynamic": "dynamic (OPERA-DP)",
           "infobatch": "InfoBatch"}
_METRICS = ("ndcg@10", "recall@20", "recall@10", "recall@100")


def _curve_figure(summary: dict[str, Any], metric: str) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, points in summary.get("curves", {}).items():
        steps = np.array([p["step"] for p in points], dtype=float)
        mean = np.array([p["metrics"][metric] for p in points])
        std = np.array([p.get("std", {}).get(metric, 0.0) for p in points])
        ax.plot(steps, mean, marker="o", ms=3, label=_LABELS.get(name, name))
        ax.fill_between(steps, mean - std, mean + std, alpha=0.15)
    base = summary.get("rows", {}).get("base", {}).get("mean", {}).get(metric)
    if base is not None:
        ax.axhline(base, color="#888888", ls="--", lw=1, label="base model")
    ax.set_xlabel("training steps")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} on the test queries against training steps (mean over seeds, ±1 std)")
    ax.legend(loc="best", fontsize=8)
    return png(fig)


def _reach(summary: dict[str, Any]) -> str:
    reach = summary.get("dynamic_reaches_none") or {}
    if not reach:
        return ""
    got = reach.get("dynamic_mean_curve")
    return (f"<p>No pruning ends at NDCG@10 {reach['target_ndcg@10']:.4f} after {reach['steps_of_none']} "
            "steps; dynamic pruning's mean curve reaches it "
            + (f"at step {got}." if got is not None else "at no evaluation point.") + "</p>")


def write_training_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` for a ``tasksift retriever train`` directory: quality-vs-steps curves and the table."""
    run_dir = Path(run_dir)
    target = page_path(run_dir, out)
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the training summary ({err})", path=path,
                         fix="pass a directory written by `tasksift retriever train --out`") from None
    rows = [[name, row.get("seeds") or "-",
             *[(f"{row['mean'][m]:.4f}" + (f" ± {row['std'][m]:.4f}" if m in row.get("std", {}) else ""))
               if m in row.get("mean", {}) else "" for m in _METRICS]]
            for name, row in summary.get("rows", {}).items()]
    images = [img(m, _curve_figure(summary, m)) for m in ("ndcg@10", "recall@20")]
    task = summary.get("task", {})
    body = f"""<h1>Retriever finetuning with pruning: {escape(task.get('name', ''))}</h1>
<p>{summary.get('steps', '?')} steps per run; {escape(json.dumps(summary.get('sizes', {})))}.</p>
<h2>Quality against training steps</h2><div class="grid">{''.join(images)}</div>
<h2>Final metrics (mean ± std over seeds)</h2>{table(["training", "seeds", *_METRICS], rows)}{_reach(summary)}
<h2>Settings</h2>{table(["setting", "value"], [[k, v] for k, v in summary.get("settings", {}).items()])}"""
    return write_page(target, document("tasksift retriever training", body))
